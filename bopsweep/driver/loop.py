"""The driver's event loop: runs a study's queued trials, one fresh process per trial, on every
slot it has, until no trial is queued or running anywhere in the study.

Each turn it records the end of exited trial processes, keeps heartbeats, fills free slots
(claiming a WAITING trial, or asking the sampler of a search for a new one), handles the
messages of running trials (metric rows, pruning), writes pending rows every few seconds, and
hands the display a snapshot. While the database is unreachable the trial processes keep
training and the driver retries its writes; Ctrl-C stops every trial process group, records the
trials as interrupted, re-queues them, and returns 130.

Helpers, one job each: :mod:`~bopsweep.driver.queue` (Optuna), :mod:`~bopsweep.driver.process`
(processes), :mod:`~bopsweep.driver.recorder` (writes), :mod:`~bopsweep.driver.outcome` (rules).
"""

from __future__ import annotations

import contextlib
import math
import queue
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import ATTEMPT, CONFIG_ID, FAILED_TRIAL, LABEL, OWNER_ATTR
from bopsweep.defaults import MAX_RETRIES, STACK, WARM_STARTS
from bopsweep.driver.folder_owner import adopt
from bopsweep.driver.outage import DatabaseLost, Outage, database_errors
from bopsweep.driver.process import Slot, TrialProcess, hide_from_children, stop_all
from bopsweep.driver.recorder import Recorder
from bopsweep.driver.seed_average import queue_for
from bopsweep.driver.state import END_EVENTS, Running, Snapshot, study_progress
from bopsweep.driver.warm import Zygotes, available
from bopsweep.store.fencing import TrialTakenOver
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.studies.config import stack_key

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from bopsweep.store import Store
    from bopsweep.studies import TrialConfig
    from bopsweep.studies.search import SearchSpace

FLUSH_SECONDS = 2.0
SNAPSHOT_SHARE = 10  # a live snapshot at most every 10 times the time it took


@dataclass(frozen=True)
class Search:
    """What an Optuna study samples from: a space around a base configuration, and its total."""

    space: SearchSpace
    base: TrialConfig
    trials: int
    seeds: int = 1  # runs per configuration, averaged (bopsweep.driver.seed_average)


class Driver:
    def __init__(
        self,
        store: Store,
        study: optuna.Study,
        slots: Sequence[Slot],
        checkpoint_root: Path,
        local: dict[str, Any] | None = None,
        max_retries: int = MAX_RETRIES,
        display: Any = None,
        search: Search | None = None,
        heartbeat_interval: float | None = None,
        tensorboard: Path | None = None,
        warm_starts: bool = WARM_STARTS,
        stack: int = STACK,
        identity: tuple[str, str] | None = None,
    ) -> None:
        """``identity``: the study's UUID and its data's fingerprint, which each trial folder is
        marked with (:meth:`~bopsweep.run_dir.RunDir.adopt`); None leaves folders unmarked."""
        import optuna

        self.store, self.slots, self.display, self.search = store, slots, display, search
        hide_from_children(store.url)  # no trial or zygote gets the URL or its password
        self.queue = queue_for(study, search)  # seed-averaged with --seeds K > 1
        board = None
        if tensorboard is not None:  # the trials' TensorBoard runs, in this folder
            from bopsweep.tensorboard import StudyBoard

            board = StudyBoard(tensorboard, self._note)
        self.recorder = Recorder(store, self.queue, max_retries, self._event, self._note, board)
        self.checkpoint_root = Path(checkpoint_root)
        self.local = local or {}
        self.heartbeat_interval = heartbeat_interval
        self.prunes = search is not None and not isinstance(study.pruner, optuna.pruners.NopPruner)
        self.running: dict[str, Running] = {}  # by Running.key: the slot (and stack member)
        self.stack = stack  # trials per process (--stack)
        # sampled trials join a stack when every one shares what a stack must (the norm alone
        # of those is searched); one that cannot waits here for a slot of its own
        self.stack_samples = search is not None and (
            "norm" in search.space.fixed or len(search.space.norms) == 1
        )
        self.held: list[FrozenTrial] = []  # claimed (RUNNING), waiting for a free slot
        self.finishing: list[Running] = []  # exited, their end not yet recorded
        self.events: queue.Queue[tuple[Running, dict[str, Any] | None]] = queue.Queue()
        self._last_flush = time.monotonic()
        self._last_heartbeat = -math.inf
        self._next_show = -math.inf  # no live snapshot before this (see _show)
        self._interrupted = False  # a Ctrl-C that Python swallowed (see _unraisable)
        self.outage = Outage(store.url, self._note)
        self.warm_starts = warm_starts and available()
        self.zygotes: Zygotes | None = None  # while it runs, with warm starts
        self.identity = identity

    @property
    def counts(self) -> dict[str, int]:
        return self.recorder.counts

    def run(self) -> int:
        """0: all done, 1: some failed (or the database was lost), 130: Ctrl-C."""
        previous_hook = sys.unraisablehook
        held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.getsignal(signum) for signum in held}
        sys.unraisablehook = self._unraisable
        try:
            if self.warm_starts:
                envs = {s.name: s.env for s in self.slots}
                data_dir = self.local.get("data_dir")
                self.zygotes = Zygotes(envs, data_dir, self.checkpoint_root, self._note)
            return self._run()
        finally:  # the process as it was: a later run (or a child it starts) gets Ctrl-C again
            if self.zygotes is not None:  # no zygote outlives the run (nor a kill -9 of it)
                self.zygotes.close()
                self.zygotes = None
            sys.unraisablehook = previous_hook
            for signum, handler in previous.items():
                if handler is not None:  # None: not set from Python, nothing to restore
                    signal.signal(signum, handler)
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
        return 1 if self.counts["failed"] and not self.queue.all_configs_complete() else 0

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
                return False
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
        self._show()
        return True

    # --- trials starting --------------------------------------------------------------------
    def _fill_slots(self) -> None:
        busy = {r.slot.name for r in self.running.values()}
        for slot in self.slots:
            if slot.name in busy:
                continue
            trials = self._next_trials()
            if not trials:
                return
            try:
                if self.heartbeat_interval is not None:  # a trial without any heartbeat is
                    for trial in trials:  # never judged stale by Optuna
                        self.queue.heartbeat(trial_id(trial))
            except BaseException:  # claimed (RUNNING): started on a later turn, or re-queued
                self.held[:0] = trials
                raise
            try:
                started = self._start(trials, slot)
            except BaseException as e:  # the trials are RUNNING: they must not stay so
                for trial in trials:
                    self.recorder.fail_unstarted(trial, e)
                if isinstance(e, KeyboardInterrupt):
                    raise
                continue
            for r in started:
                self.running[r.key] = r
                self._event("start", r)

    def _next_trials(self) -> list[FrozenTrial]:
        """The trials of the next process: one, or up to ``--stack`` that can share one
        (:data:`~bopsweep.studies.config.STACK_SHARED`), queued ones first."""
        first = self.held.pop(0) if self.held else self.queue.claim() or self._sample()
        if first is None or self.stack == 1:
            return [] if first is None else [first]
        key = stack_key(self.queue.config(first))
        trials = [first]
        while len(trials) < self.stack:
            trial = self.queue.claim(lambda config: stack_key(config) == key)
            if trial is None and self.stack_samples:
                trial = self._sample()
                if trial is not None and stack_key(self.queue.config(trial)) != key:
                    self.held.append(trial)
                    break
            if trial is None:
                break
            trials.append(trial)
        return trials

    def _sample(self) -> FrozenTrial | None:
        """A new trial from the sampler, while the study holds fewer than its total."""
        if self.search is None or self.queue.counted() >= self.search.trials:
            return None
        from bopsweep.store.trial_config import config_attrs
        from bopsweep.studies import config_id, describe_config
        from bopsweep.studies.search import suggest

        search = self.search

        def configure(trial: optuna.Trial) -> dict[str, Any]:
            config = suggest(trial, search.space, search.base)
            return {
                CONFIG_ID: config_id(config),
                LABEL: describe_config(config),
                # against the base the study stores (its trials are rebuilt from that one)
                **config_attrs(config.to_dict(), self.queue.base),
                ATTEMPT: 0,
            }

        return self.queue.ask(configure)

    def _start(self, trials: list[FrozenTrial], slot: Slot) -> list[Running]:
        """Start a trial process for ``trials`` (one, or a stack of several), each in its
        configuration's own folder (no database write here: a failed write must not orphan
        it)."""
        runs: list[Running] = []
        jobs: list[dict[str, Any]] = []
        for trial in trials:
            attrs = trial.user_attrs
            run_dir = self.checkpoint_root / attrs[CONFIG_ID]
            if adopt(run_dir, attrs[CONFIG_ID], self.identity):
                self._note(f"{run_dir} held a run on other data (or another study's); started over")
            stored = self.queue.config(trial)
            config = {**stored, **self.local, "device": slot.device}
            runs.append(
                Running(
                    trial.number,
                    trial_id(trial),
                    attrs[CONFIG_ID],
                    attrs.get(LABEL, ""),
                    stored,
                    slot,
                    attrs.get(ATTEMPT, 0),
                    config["epochs"],
                    retry_of=trial.system_attrs.get(FAILED_TRIAL),
                    member=len(runs) if len(trials) > 1 else None,
                    run_dir=run_dir,
                    owner=trial.system_attrs.get(OWNER_ATTR),
                )
            )
            owner = runs[-1].owner  # the trial process checks it against the folder's
            # only a retry of an attempt the database failed as lost may ask a live process in
            # its folder to leave: two live attempts of one configuration never evict each other
            take_over = runs[-1].retry_of is not None
            jobs.append(
                {"config": config, "run_dir": str(run_dir), "owner": owner, "take_over": take_over}
            )
        single = {**jobs[0]["config"], "owner": jobs[0]["owner"], "take_over": jobs[0]["take_over"]}
        job = single if len(jobs) == 1 else {"stack": jobs}

        def on_message(message: dict[str, Any] | None) -> None:
            if message is None:  # the end of the channel: every member's
                for r in runs:
                    self.events.put((r, None))
            else:
                self.events.put((runs[message.get("member", 0)], message))

        # a stack's stderr (one process) goes to every member's trial.log
        logs = [self.checkpoint_root / r.config_id / "trial.log" for r in runs]
        process = TrialProcess(logs[0].parent, slot, job, on_message, self.zygotes, logs)
        for r in runs:
            r.process = process
        return runs

    # --- messages of running trials ---------------------------------------------------------
    def _wait_for_events(self, timeout: float) -> None:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, r: Running, msg: dict[str, Any] | None) -> None:
        if r.abandoned:
            return
        if msg is None:
            r.proc.eof = True
            return
        kind = msg["type"]
        if kind == "resumed":
            r.resumed_from = len(msg["rows"])
            for row in msg["rows"]:
                r.add_epoch(row, [s for s in msg["steps"] if s["epoch"] == row["epoch"]])
            if r.retry_of is not None:
                self._event("continued", r)
        elif kind == "epoch":
            if r.retry_of is not None and r.resumed_from == 0 and r.epochs_done == 0:
                self._event("restarted", r, str(self.checkpoint_root))
            r.add_epoch(msg["row"], msg["steps"])
            self._event("epoch", r)
            if self.prunes:
                self.recorder.flush(r)  # the pruner reads the learning curve from the database
                if r.pruned_at is None and self.queue.should_prune(r.trial_id):
                    r.pruned_at = r.epochs_done
                    r.stop()
        elif kind == "progress":
            r.progress = msg
        else:  # done, diverged, error; stopped (a pruned member of a stack)
            r.last_message = msg

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
    def _keep_alive(self) -> None:
        """Heartbeats of this driver's trials; other drivers' stale trials failed and re-queued."""
        if self.heartbeat_interval is None:
            return
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
        if self.display is not None:
            if kind in END_EVENTS:  # the line of a trial's end shows the study's progress
                self._refresh_progress()
            self.display.event(kind, r.view(), detail)

    def _note(self, text: str) -> None:
        if self.display is not None:
            self.display.note(text)

    def _show(self) -> None:
        """A live snapshot, at most as often as the display wants one and so that reading the
        study takes at most a tenth of the loop's time: a snapshot reads every trial, seconds
        for a study of 10,000, and would stall the loop (messages, heartbeats) at 4 a second."""
        if self.display is None or time.monotonic() < self._next_show:
            return
        if self.display.wants_update():
            start = time.monotonic()
            self.display.update(self._snapshot())
            self._next_show = start + SNAPSHOT_SHARE * (time.monotonic() - start)

    def _refresh_progress(self) -> None:
        """A fresh snapshot for the display; skipped while the database is unreachable (the
        trial's end is recorded already, and its line must come all the same)."""
        import optuna
        import sqlalchemy.exc

        with contextlib.suppress(
            sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError
        ):
            self.display.update(self._snapshot())

    def _snapshot(self) -> Snapshot:
        counts, trials = self.counts, self.queue.trials()
        search = None  # a search's runs in all (K per configuration with --seeds K)
        if self.search is not None:
            search = (self.search.trials * self.search.seeds, self.search.base.epochs)
        return Snapshot(
            counts["done"],
            counts["failed"],
            counts["pruned"] if self.search is not None else None,
            sum(t.state.name == "WAITING" for t in trials),
            [r.view() for r in self.running.values()],
            study_progress(
                trials, self.queue.base, [*self.running.values(), *self.finishing], search
            ),
        )
