"""The driver's event loop: runs a study's queued trials, one fresh process per trial, on every
slot it has, until no trial is queued or running anywhere in the study.

Each turn it records the end of exited trial processes, keeps heartbeats, fills free slots
(claiming a WAITING trial, or asking the sampler of a search for a new one), handles the
messages of running trials (metric rows, pruning), writes pending rows every few seconds, and
hands the display a snapshot. While the database is unreachable the trial processes keep
training and the driver retries its writes; Ctrl-C stops every trial process group, records the
trials as interrupted, re-queues them, and returns 130.

Helpers, one job each: :mod:`~bopsweep.driver.queue` (Optuna), :mod:`~bopsweep.driver.process`
(processes), :mod:`~bopsweep.driver.messages` (their messages), :mod:`~bopsweep.driver.recorder`
(writes), :mod:`~bopsweep.driver.outcome` (rules).
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.defaults import MAX_RETRIES, STACK, WARM_STARTS
from bopsweep.driver.environ import hide_from_children
from bopsweep.driver.launch import Launcher
from bopsweep.driver.messages import TrialMessages
from bopsweep.driver.outage import DatabaseLost, Outage, database_errors
from bopsweep.driver.process import Slot, stop_all
from bopsweep.driver.recorder import Recorder
from bopsweep.driver.seed_average import queue_for
from bopsweep.driver.showing import Showing
from bopsweep.driver.state import Display, Running
from bopsweep.driver.warm import Zygotes, available
from bopsweep.readers.tensorboard import StudyBoard
from bopsweep.store.fencing import TrialTakenOver
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.store.sql import ensure_state_index

# optuna: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from bopsweep.store import Store
    from bopsweep.studies.search import Search

FLUSH_SECONDS = 2.0


@dataclass(frozen=True)
class LoopSettings:
    """How a driver runs its trials (the command line's dispatch options)."""

    max_retries: int = MAX_RETRIES
    heartbeat_interval: float | None = None  # shared databases: heartbeats of running trials
    tensorboard: Path | None = None  # a TensorBoard run per trial, in this folder
    warm_starts: bool = WARM_STARTS
    stack: int = STACK  # trials per process
    # the study's UUID and its data's fingerprint, which each trial folder is marked with
    # (:meth:`~bopsweep.trial.run_dir.RunDir.adopt`); None leaves folders unmarked
    identity: tuple[str, str] | None = None


class Driver:
    def __init__(
        self,
        store: Store,
        study: optuna.Study,
        slots: Sequence[Slot],
        checkpoint_root: Path,
        local: dict[str, Any] | None = None,
        display: Display | None = None,
        search: Search | None = None,
        settings: LoopSettings = LoopSettings(),
    ) -> None:
        import optuna

        self.store, self.slots, self.search = store, slots, search
        hide_from_children(store.url)  # no trial or zygote gets the URL or its password
        ensure_state_index(store.engine)  # what claims and the progress read by
        self.queue = queue_for(study, search)  # seed-averaged with --seeds K > 1
        self.running: dict[str, Running] = {}  # by Running.key: the slot (and stack member)
        self.finishing: list[Running] = []  # exited, their end not yet recorded
        self.showing = Showing(
            display, self.queue, store.metrics, search, lambda: self.counts, self._runs
        )
        board = None
        if settings.tensorboard is not None:  # the trials' TensorBoard runs, in this folder
            board = StudyBoard(settings.tensorboard, self._note)
        retries = settings.max_retries
        data = settings.identity[1] if settings.identity is not None else None
        self.recorder = Recorder(store, self.queue, retries, self._event, self._note, board, data)
        self.checkpoint_root = Path(checkpoint_root)
        self.local = local or {}
        where = (self.checkpoint_root, self.local, settings.identity)
        self.launcher = Launcher(self.queue, search, settings.stack, *where, self._note)
        self.heartbeat_interval = settings.heartbeat_interval
        prunes = search is not None and not isinstance(study.pruner, optuna.pruners.NopPruner)
        self.held = self.launcher.held  # claimed (RUNNING), waiting for a free slot
        events, root = self.launcher.events, self.checkpoint_root
        self.messages = TrialMessages(events, self.queue, self.recorder, prunes, root, self._event)
        self._last_flush = time.monotonic()
        self._last_heartbeat = -math.inf
        self._interrupted = False  # a Ctrl-C that Python swallowed (see _unraisable)
        self.outage = Outage(store.url, self._note)
        self.warm_starts = settings.warm_starts and available()

    @property
    def counts(self) -> dict[str, int]:
        return self.recorder.counts

    def _runs(self) -> tuple[Iterable[Running], Iterable[Running]]:
        """This driver's running trials, and those whose end is not yet recorded."""
        return self.running.values(), self.finishing

    def run(self) -> int:
        """0: all done, 1: some failed (or the database was lost), 130: Ctrl-C."""
        with _process_kept(self._unraisable):
            try:
                if self.warm_starts:
                    envs = {s.name: s.env for s in self.slots}
                    data_dir = self.local.get("data_dir")
                    zygotes = Zygotes(envs, data_dir, self.checkpoint_root, self._note)
                    self.launcher.zygotes = zygotes
                return self._run()
            finally:
                if self.launcher.zygotes is not None:  # no zygote outlives the run (nor a kill)
                    self.launcher.zygotes.close()
                    self.launcher.zygotes = None
                if self.recorder.board is not None:
                    self.recorder.board.close()

    def _unraisable(self, info: Any) -> None:
        """A Ctrl-C that arrives while Python runs a finalizer (a weakref callback, a
        ``__del__``) cannot propagate: Python reports it here and carries on. Noted, and acted
        on at the start of the next turn, so no Ctrl-C is lost."""
        if isinstance(info.exc_value, KeyboardInterrupt):
            self._interrupted = True
            return
        sys.__unraisablehook__(info)

    def _run(self) -> int:
        import optuna

        db_errors = database_errors()
        try:
            while True:
                try:
                    if not self._step():
                        break
                    self.outage.over()
                except db_errors as e:
                    self.outage.failed(e)
                except (optuna.exceptions.UpdateFinishedTrialError, TrialTakenOver):
                    self._abandon_taken_over()
            undone = self.counts["failed"] and not self.outage.ride_out(
                self.queue.all_configs_complete
            )
        except KeyboardInterrupt:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the clean-up
            self._stop_all()
            try:
                self._record_interrupted()
            except db_errors:
                self._note(
                    "could not record the interrupted trials (database unreachable); "
                    "they resume all the same"
                )
            return 130
        except DatabaseLost as e:
            self._stop_all()
            self._note(str(e))
            return 1
        except BaseException:  # a bug or a study-level error: its trials go back to the queue
            self._stop_all()
            with contextlib.suppress(Exception):
                self._record_interrupted()
            raise
        return 1 if undone else 0

    def _step(self) -> bool:
        """One turn of the loop; False when the study has nothing left for this driver."""
        if self._interrupted:
            raise KeyboardInterrupt
        self._finish_pending()
        self._keep_alive()
        self._fill_slots()
        if not self.running and not self.finishing and not self.held:
            others = self.queue.count("RUNNING") > len(self.running)  # another driver's trials
            if not others and not self.queue.count("WAITING"):
                # a retry that was never queued (the database went away between a trial's end
                # and its retry, here or in another driver): queued now; else nothing is left
                return self.queue.requeue_lost() > 0
            # a trial re-queued as it failed to start, one waiting for its configuration's
            # other run to end, or another driver's trials that may come back: a later turn
            time.sleep(1.0)
            return True
        self._wait_for_events(0.25)
        for r in [r for r in self.running.values() if r.ended()]:
            del self.running[r.key]
            self.finishing.append(r)
        self._finish_pending()
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            for r in self.running.values():
                self.recorder.flush(r)
            self._last_flush = time.monotonic()
        self.showing.show()
        return True

    # --- trials starting --------------------------------------------------------------------
    def _fill_slots(self) -> None:
        busy = {r.slot.name for r in self.running.values()}
        for slot in self.slots:
            if slot.name in busy:
                continue
            trials = self.launcher.next_trials()
            if not trials:
                return
            try:
                self._keep_alive(trials)
                if self.launcher.zygotes is not None:  # loading: the heartbeats go on
                    beat = functools.partial(self._keep_alive, trials)
                    self.launcher.zygotes.await_ready(slot.name, beat)
            except BaseException:  # claimed (RUNNING): started on a later turn, or re-queued
                self.held[:0] = trials
                raise
            try:
                started = self.launcher.start(trials, slot)
            except BaseException as e:  # the trials are RUNNING: they must not stay so
                for trial in trials:
                    self.recorder.fail_unstarted(trial, e)
                if isinstance(e, KeyboardInterrupt):
                    raise
                continue
            for r in started:
                self.running[r.key] = r
                self._event("start", r)

    # --- messages of running trials ---------------------------------------------------------
    def _wait_for_events(self, timeout: float) -> None:
        self.messages.wait(timeout)

    # --- endings ----------------------------------------------------------------------------
    def _finish_pending(self) -> None:
        """Record the end of exited trial processes; one that fails on the database stays
        pending and is recorded on a later turn."""
        while self.finishing:
            self.recorder.finish(self.finishing[0])
            self.finishing.pop(0)

    def _stop_all(self) -> None:
        stop_all([r.proc for r in self.running.values()])

    def _record_interrupted(self) -> None:
        self._wait_for_events(0.1)  # epochs that finished while stopping
        self._finish_pending()
        for r in list(self.running.values()):
            self.recorder.interrupted(r)
        self.running.clear()
        while self.held:  # claimed, never started: queued again
            self.recorder.fail_unstarted(self.held.pop(0), KeyboardInterrupt())

    # --- other drivers and the database -----------------------------------------------------
    def _keep_alive(self, claimed: Sequence[FrozenTrial] = ()) -> None:
        """Heartbeats of trials just claimed (one without any is never judged stale by Optuna)
        and, on their schedule, of this driver's running ones; other drivers' stale trials
        failed and re-queued."""
        if self.heartbeat_interval is None:
            return
        for trial in claimed:
            self.queue.heartbeat(trial_id(trial))
        now = time.monotonic()
        if now - self._last_heartbeat < min(self.heartbeat_interval, 5.0):
            return
        for r in self.running.values():
            if r.proc.making_progress():  # a stopped trial process gets no heartbeat
                self.queue.heartbeat(r.trial_id)
        self.queue.fail_stale()
        self._abandon_taken_over()
        self._last_heartbeat = now

    def _abandon_taken_over(self) -> None:
        """Trials of this driver that another one judged stale (no heartbeat for the grace
        period: its process stopped, or this driver stopped or cut off from the database) were
        failed and re-queued there, or a write of theirs was refused (fencing): their retry
        continues from the checkpoint, so this driver stops its copy (woken first if it was
        stopped, so that it takes the signal now)."""
        for r in [*self.running.values(), *self.finishing]:
            if r.refused or self.queue.is_finished(r.trial_id):
                r.abandoned = True
                r.proc.stop()
                r.proc.stop(signal.SIGCONT)
                self._event("taken_over", r)
        self.running = {k: r for k, r in self.running.items() if not r.abandoned}
        self.finishing = [r for r in self.finishing if not r.abandoned]

    # --- display ----------------------------------------------------------------------------
    def _event(self, kind: str, r: Running, detail: str = "") -> None:
        self.showing.event(kind, r, detail)

    def _note(self, text: str) -> None:
        self.showing.note(text)


@contextlib.contextmanager
def _process_kept(on_unraisable: Callable[[Any], None]) -> Iterator[None]:
    """The process as it was after a run: its signal handlers and unraisable hook (Ctrl-C and
    SIGTERM are set aside while trials stop), so a later run, or a child it starts, gets Ctrl-C
    again."""
    previous_hook = sys.unraisablehook
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in held}
    sys.unraisablehook = on_unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to restore
                signal.signal(signum, handler)
