"""The driver: runs a study's queued trials, one fresh process per trial, on every slot it has.

One driver per machine owns its trials:

* a **slot** is a GPU (``CUDA_VISIBLE_DEVICES`` set to it; ``--per-gpu K`` slots each) or a CPU
  worker (torch threads split so ``workers × threads ≤ cores``);
* for each slot it pops a WAITING trial, starts ``python -m bopsweep.trial_process`` in a new
  process group, and reads its metrics from a pipe;
* it alone writes the database: metric rows in batches, the per-epoch validation accuracy as
  the trial's intermediate values, and the trial's end (COMPLETE with its final validation
  accuracy, or FAIL with the reason);
* a crashed trial (non-zero exit, a signal, out of memory) is re-queued up to ``max_retries``
  times and continues from its last checkpoint; a diverged one is not;
* Ctrl-C stops every trial process group, records the trials as interrupted, re-queues them, and
  exits 130; ``bopsweep resume`` continues them from their checkpoints.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.errors import UserError
from bopsweep.studies import MAX_TRIALS
from bopsweep.trial_process import EXIT_DIVERGED, EXIT_USER_ERROR

if TYPE_CHECKING:
    import optuna

    from bopsweep.store import Store
    from bopsweep.studies import PlannedTrial

FLUSH_SECONDS = 2.0
STOP_GRACE_SECONDS = 10.0
DB_RETRY_SECONDS = 2.0
DB_OUTAGE_LIMIT_SECONDS = 900.0  # then the driver gives up: trials resume from checkpoints
EOF_GRACE_SECONDS = 2.0  # a process gone whose pipe a leftover child still holds open
STDERR_LINES = 50  # of a trial's stderr kept in memory for its failure reason


class DatabaseLost(RuntimeError):
    """The database stayed unreachable for longer than the driver waits."""


@dataclass(frozen=True)
class Slot:
    name: str
    device: str  # "cpu" or "cuda" (the one GPU the slot's CUDA_VISIBLE_DEVICES shows)
    env: dict[str, str]
    threads: int


def make_slots(
    device: str = "auto",
    gpus: list[int] | None = None,
    per_gpu: int = 1,
    workers: int | None = None,
) -> list[Slot]:
    """GPU slots (all visible GPUs unless ``gpus`` names some), else CPU workers."""
    if per_gpu < 1:
        raise UserError(f"--per-gpu must be >= 1, got {per_gpu}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    cores = os.cpu_count() or 1
    if device != "cpu":
        if gpus is None:
            gpus = list(range(_visible_gpu_count()))
        elif gpus and _visible_gpu_count() == 0:
            raise UserError("--gpus given, but no GPU is visible here; use --device cpu")
        if gpus:
            n = len(gpus) * per_gpu
            env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            return [
                Slot(
                    f"gpu{g}" + (f".{k}" if per_gpu > 1 else ""),
                    "cuda",
                    {**env, "CUDA_VISIBLE_DEVICES": str(g)},
                    max(1, cores // n),
                )
                for g in gpus
                for k in range(per_gpu)
            ]
        if device.startswith("cuda"):
            raise UserError("--device cuda asked for, but no GPU is visible here; use --device cpu")
    n = workers or 1
    threads = max(1, cores // n)
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}
    return [Slot(f"cpu{i}", "cpu", env, threads) for i in range(n)]


def _visible_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


@dataclass
class Running:
    """A trial process and what the driver knows of it."""

    number: int
    trial_id: int
    config_id: str
    label: str
    config: dict[str, Any]
    slot: Slot
    proc: subprocess.Popen
    log: Path
    attempt: int
    epochs: int
    pending_rows: list[dict[str, Any]] = field(default_factory=list)
    pending_steps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    resumed_from: int = 0
    last_val: float | None = None
    last_pi: float | None = None
    outcome: dict[str, Any] | None = None
    pruned_at: int | None = None
    retry_of: int | None = None  # the stale trial of another driver this one continues
    abandoned: bool = False  # judged stale by another driver, which re-queued it
    eof: bool = False
    exited_at: float | None = None  # when the driver first saw the process gone
    stderr_reader: threading.Thread | None = None
    stderr_tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=STDERR_LINES)
    )


@dataclass(frozen=True)
class Search:
    """What an Optuna study samples from: a space around a base configuration, and its total."""

    space: Any  # bopsweep.search.SearchSpace
    base: Any  # bopsweep.config.TrialConfig
    trials: int


class Driver:
    def __init__(
        self,
        store: Store,
        study: optuna.Study,
        slots: list[Slot],
        checkpoint_root: Path,
        local: dict[str, Any] | None = None,
        max_retries: int = 2,
        display: Any = None,
        search: Search | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        import optuna

        self.store, self.study, self.slots = store, study, slots
        self.heartbeat_interval = heartbeat_interval
        self.finishing: list[Running] = []
        self._last_heartbeat = -math.inf
        self._db_down_since: float | None = None
        self.search = search
        self.prunes = search is not None and not isinstance(study.pruner, optuna.pruners.NopPruner)
        self.checkpoint_root = Path(checkpoint_root)
        self.local = local or {}
        self.max_retries = max_retries
        self.display = display
        self.running: dict[str, Running] = {}
        self.events: queue.Queue[tuple[Running, dict[str, Any] | None]] = queue.Queue()
        self.counts = {"done": 0, "failed": 0, "pruned": 0}
        self._last_flush = time.monotonic()

    # --- queue ------------------------------------------------------------------------------
    def enqueue_missing(self, planned: list[PlannedTrial]) -> int:
        """Queue every planned configuration the study does not already hold; how many were new."""
        existing = {
            t.user_attrs.get("config_id")
            for t in self.study.get_trials(deepcopy=False)
            if _holds_result_or_is_pending(t)
        }
        added = 0
        for p in planned:
            if p.config_id not in existing:
                self._enqueue(p.params, p.config_id, p.label, p.config.to_dict(), attempt=0)
                added += 1
        return added

    def _enqueue(
        self,
        params: dict[str, Any],
        config_id: str,
        label: str,
        config: dict[str, Any],
        attempt: int,
        distributions: Any = None,
    ) -> None:
        import optuna

        from bopsweep.studies import param_distributions

        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=params,
            distributions=distributions or param_distributions(params),
            user_attrs={
                "config_id": config_id,
                "label": label,
                "config": config,
                "attempt": attempt,
            },
        )
        self.study.add_trial(trial)

    def _requeue(self, t: optuna.trial.FrozenTrial, attempt: int) -> None:
        """Queue a trial's configuration again, as a new trial (Optuna cannot reopen one)."""
        attrs = t.user_attrs
        self._enqueue(
            t.params,
            attrs["config_id"],
            attrs.get("label", ""),
            attrs["config"],
            attempt,
            t.distributions,
        )

    def _fail(
        self, t: optuna.trial.FrozenTrial, failure: str, reason: str, requeue: int | None
    ) -> None:
        """FAIL a trial no process runs for, with its reason; re-queued at attempt ``requeue``
        unless that is None."""
        import optuna

        attrs = {"failure": failure, "fail_reason": reason, "requeued": requeue is not None}
        self._set_attrs(t._trial_id, attrs)
        self._tell_trial(t._trial_id, t.number, state=optuna.trial.TrialState.FAIL)
        if requeue is not None:
            self._requeue(t, requeue)

    def recover_stale(self) -> int:
        """Trials left RUNNING by a driver that died: failed as interrupted and re-queued.

        Only called while holding the database's driver lock (SQLite), when no other driver
        can own a running trial.
        """
        import optuna

        stale = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in stale:
            self._fail_untracked(t, "interrupted", "the driver stopped while it ran")
        return len(stale)

    def _fail_untracked(self, t: optuna.trial.FrozenTrial, failure: str, reason: str) -> None:
        """Fail a trial no trial process runs for, and re-queue its configuration (if it has
        one: a trial the sampler created but that was never configured has none)."""
        if not _configured(t):
            reason += "; it was never configured, so it is not re-queued"
            self._fail(t, failure, reason, requeue=None)
        else:
            self._fail(t, failure, reason, requeue=t.user_attrs.get("attempt", 0))

    def _pop(self) -> optuna.trial.FrozenTrial | None:
        import optuna

        storage = self.study._storage
        waiting = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        for t in sorted(waiting, key=lambda t: t.number):
            try:
                if not storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if _configured(t):
                return t
            # queued by another tool (e.g. Optuna's enqueue_trial): nothing bopsweep can run
            self._fail_untracked(t, "error", "queued without a bopsweep configuration")
        return self._sample()

    def _sample(self) -> optuna.trial.FrozenTrial | None:
        """A new trial from the sampler, while the study holds fewer than its total."""
        if self.search is None or self.counted() >= self.search.trials:
            return None
        from bopsweep.search import suggest
        from bopsweep.studies import config_id, describe_config

        first_new = len(self.study.get_trials(deepcopy=False))
        try:
            trial = self.study.ask()
        except BaseException as e:  # Optuna made the trial before its sampler failed
            import optuna

            running = (optuna.trial.TrialState.RUNNING,)
            for t in self.study.get_trials(deepcopy=False, states=running):
                if t.number >= first_new and not _configured(t):
                    self._fail_untracked(t, "error", _describe(e))
            raise
        try:
            config = suggest(trial, self.search.space, self.search.base)
            attrs = {
                "config_id": config_id(config),
                "label": describe_config(config),
                "config": config.to_dict(),
                "attempt": 0,
            }
            self._set_attrs(trial._trial_id, attrs)
        except BaseException as e:  # an asked trial must not stay RUNNING, whatever stopped us
            self._fail_untracked(
                self.study._storage.get_trial(trial._trial_id), "error", _describe(e)
            )
            raise
        return self.study._storage.get_trial(trial._trial_id)

    def counted(self) -> int:
        """Trials that count towards a search's total: one per configuration (a retry, under a
        new number, continues the same configuration); a trial that failed before it was
        configured does not count."""
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        fail = optuna.trial.TrialState.FAIL
        return len(
            {
                t.user_attrs.get("config_id") or f"#{t.number}"  # '#n': being configured now
                for t in trials
                if _configured(t) or t.state != fail
            }
        )

    def queued(self) -> int:
        import optuna

        return len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))

    # --- main loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until no trial is queued or running anywhere in the study.

        0: all done, 1: some failed (or the database was lost), 130: Ctrl-C. While the database
        is unreachable the trial processes keep training; the driver retries its writes.
        """
        import optuna
        import sqlalchemy.exc

        db_errors = (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
        )
        try:
            while True:
                try:
                    if not self._step():
                        break
                    if self._db_down_since is not None:
                        self._db_down_since = None
                        self._note("the database is reachable again")
                except db_errors as e:
                    self._database_unreachable(e)
                except optuna.exceptions.UpdateFinishedTrialError:
                    self._abandon_taken_over()
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
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
        return 1 if self.counts["failed"] and not self._all_configs_complete() else 0

    def _step(self) -> bool:
        """One turn of the loop; False when the study has nothing left for this driver."""
        self._finish_pending()
        self._keep_alive()
        self._fill_slots()
        if not self.running and not self.finishing:
            if not self._others_running():
                return False
            time.sleep(1.0)  # another driver's trials may come back to the queue
            return True
        self._wait_for_events(0.25)
        for r in [r for r in self.running.values() if self._exited(r)]:
            del self.running[r.slot.name]
            self.finishing.append(r)
        self._finish_pending()
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self._flush_all()
        self._show()
        return True

    def _exited(self, r: Running) -> bool:
        """The process is gone and its messages are read: at once at the end of its channel,
        or after a short grace when a leftover child of it still holds the channel open."""
        if r.proc.poll() is None:
            return False
        if r.exited_at is None:
            r.exited_at = time.monotonic()
        return r.eof or time.monotonic() - r.exited_at > EOF_GRACE_SECONDS

    def _keep_alive(self) -> None:
        """Heartbeats of this driver's trials; other drivers' stale trials failed and re-queued."""
        if self.heartbeat_interval is None:
            return
        now = time.monotonic()
        if now - self._last_heartbeat < min(self.heartbeat_interval, 5.0):
            return
        import optuna

        storage = self.study._storage
        for r in self.running.values():
            storage.record_heartbeat(r.trial_id)
        with warnings.catch_warnings():  # experimental in Optuna; used as documented
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        self._abandon_taken_over()
        self._last_heartbeat = now

    def _abandon_taken_over(self) -> None:
        """Trials of this driver that another one judged stale (no heartbeat for the grace
        period, e.g. across a long database outage) were failed and re-queued there: their
        retry continues from the checkpoint, so this driver stops its copy."""
        storage = self.study._storage
        for r in [*self.running.values(), *self.finishing]:
            if storage.get_trial(r.trial_id).state.is_finished():
                r.abandoned = True
                _stop_group(r.proc)
                self._event("taken_over", r)
        self.running = {k: r for k, r in self.running.items() if not r.abandoned}
        self.finishing = [r for r in self.finishing if not r.abandoned]

    def _others_running(self) -> bool:
        """Trials RUNNING in the study that this driver does not run (another machine's)."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return len(running) > len(self.running)

    def _database_unreachable(self, e: BaseException) -> None:
        from bopsweep.store import first_line, scrub

        if _cannot_be_written(e, self.store.url):
            raise DatabaseLost(
                f"the database cannot be written ({scrub(first_line(e), self.store.url)}); trial "
                "processes stopped, finished trials and epochs are saved; fix it (free some disk "
                "space?) and run 'bopsweep resume'"
            )
        now = time.monotonic()
        if self._db_down_since is None:
            self._db_down_since = now
            self._note(
                f"the database is unreachable ({scrub(first_line(e), self.store.url)}); "
                f"retrying for up to {DB_OUTAGE_LIMIT_SECONDS:.0f} s, trials keep training"
            )
        elif now - self._db_down_since > DB_OUTAGE_LIMIT_SECONDS:
            raise DatabaseLost(
                f"the database stayed unreachable for {DB_OUTAGE_LIMIT_SECONDS:.0f} s; trial "
                "processes stopped, finished trials are saved; run the same command (or "
                "'bopsweep resume') again when it is back"
            )
        time.sleep(DB_RETRY_SECONDS)

    def _fill_slots(self) -> None:
        for slot in self.slots:
            if slot.name in self.running:
                continue
            trial = self._pop()
            if trial is None:
                return
            if self.heartbeat_interval is not None:  # a trial without any heartbeat is never
                self.study._storage.record_heartbeat(trial._trial_id)  # judged stale by Optuna
            try:
                self.running[slot.name] = self._start(trial, slot)
            except BaseException as e:  # the trial is RUNNING: it must not stay so
                interrupted = isinstance(e, KeyboardInterrupt)
                self._fail_unstarted(trial, "interrupted" if interrupted else "crash", e)
                if interrupted:
                    raise
                continue
            self._event("start", self.running[slot.name])

    def _fail_unstarted(
        self, trial: optuna.trial.FrozenTrial, failure: str, e: BaseException
    ) -> None:
        """A trial whose process could not be started (its folder cannot be made, the disk is
        full, Ctrl-C): FAIL with the reason, re-queued like a crash (within --max-retries)."""
        attempt = trial.user_attrs.get("attempt", 0)
        retry = failure == "interrupted" or attempt < self.max_retries
        reason = f"could not start: {_describe(e)}"
        next_attempt = attempt + (failure != "interrupted")
        self._fail(trial, failure, reason, requeue=next_attempt if retry else None)
        if not retry:
            self.counts["failed"] += 1
        self._note(f"trial {trial.number} {reason}" + ("; re-queued" if retry else ""))

    def _start(self, trial: optuna.trial.FrozenTrial, slot: Slot) -> Running:
        """Start a trial process (no database write here: a failed write must not orphan it).

        Its stderr comes to the driver through a pipe (and on to ``trial.log``, best effort), so
        its last words reach the database even when the log cannot be written (a full disk).
        """
        config_id = trial.user_attrs["config_id"]
        run_dir = self.checkpoint_root / config_id
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {**trial.user_attrs["config"], **self.local, "device": slot.device}
        env = {**os.environ, **slot.env, "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable,
            "-m",
            "bopsweep.trial_process",
            str(run_dir),
            str(slot.threads),
            str(os.getpid()),
        ]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        r = Running(
            trial.number,
            trial._trial_id,
            config_id,
            trial.user_attrs.get("label", ""),
            trial.user_attrs["config"],
            slot,
            proc,
            run_dir / "trial.log",
            trial.user_attrs.get("attempt", 0),
            config["epochs"],
            retry_of=trial.system_attrs.get("failed_trial"),
        )
        threading.Thread(target=self._read, args=(r,), daemon=True).start()
        r.stderr_reader = threading.Thread(target=_keep_stderr, args=(r,), daemon=True)
        r.stderr_reader.start()
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: its stderr says why
            proc.stdin.write(json.dumps(config))
            proc.stdin.close()
        return r

    def _read(self, r: Running) -> None:
        assert r.proc.stdout is not None
        for line in r.proc.stdout:
            try:
                self.events.put((r, json.loads(line)))
            except json.JSONDecodeError:
                continue  # not ours: the channel carries JSON lines only
        self.events.put((r, None))

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
            r.eof = True
            return
        kind = msg["type"]
        if kind == "resumed":
            r.resumed_from = len(msg["rows"])
            for row in msg["rows"]:
                self._add_epoch(r, row, [s for s in msg["steps"] if s["epoch"] == row["epoch"]])
            if r.retry_of is not None:
                self._event("continued", r)
        elif kind == "epoch":
            if r.retry_of is not None and r.resumed_from == 0 and r.epochs_done == 0:
                self._event("restarted", r, str(self.checkpoint_root))
            self._add_epoch(r, msg["row"], msg["steps"])
            self._event("epoch", r)
            if self.prunes:
                self._flush(r)  # the pruner reads the learning curve from the database
                if r.pruned_at is None and self._should_prune(r):
                    r.pruned_at = r.epochs_done
                    _stop_group(r.proc)
        elif kind == "progress":
            r.progress = msg
        else:  # done, diverged, error
            r.outcome = msg

    def _add_epoch(self, r: Running, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        r.pending_rows.append(row)
        r.pending_steps[row["epoch"]] = steps
        r.epochs_done = row["epoch"]
        r.last_val, r.last_pi = row["val_acc"], row["pi"]

    def _should_prune(self, r: Running) -> bool:
        return self.study.pruner.prune(self.study, self.study._storage.get_trial(r.trial_id))

    def _flush(self, r: Running) -> None:
        """Write a trial's pending metric rows, and its validation accuracy as the trial's
        intermediate values (the learning curve Optuna's tools and pruners see). Idempotent:
        cleared only once written."""
        if not r.pending_rows:
            return
        self.store.write_metrics(self.study._study_id, r.trial_id, r.pending_rows, r.pending_steps)
        storage = self.study._storage
        for row in r.pending_rows:
            storage.set_trial_intermediate_value(r.trial_id, row["epoch"], row["val_acc"])
        r.pending_rows, r.pending_steps = [], {}

    def _flush_all(self) -> None:
        for r in self.running.values():
            self._flush(r)
        self._last_flush = time.monotonic()

    # --- endings ------------------------------------------------------------------------------
    def _finish_pending(self) -> None:
        """Record the end of exited trial processes; one that fails on the database stays
        pending and is recorded on a later turn."""
        while self.finishing:
            self._finish(self.finishing[0])
            self.finishing.pop(0)

    def _finish(self, r: Running) -> None:
        import optuna

        if self.study._storage.get_trial(r.trial_id).state.is_finished():
            # recorded already: Ctrl-C came after the write, before the driver noted it (a
            # missing re-queue is restored by the next start's enqueue of missing configs)
            return
        self._flush(r)
        rc = r.proc.returncode
        attrs: dict[str, Any] = {
            "epochs_done": r.epochs_done,
            "resumed_from_epoch": r.resumed_from,
            "run_dir": str(r.log.parent),
            "slot": r.slot.name,
        }
        outcome = r.outcome or {}
        if r.pruned_at is not None and outcome.get("type") != "done":
            self._set_attrs(r.trial_id, {**attrs, "pruned_at_epoch": r.pruned_at})
            self._tell(r, state=optuna.trial.TrialState.PRUNED)
            self.counts["pruned"] += 1
            self._event("pruned", r)
            return
        if rc == 0 and outcome.get("type") == "done":
            summary = outcome["summary"]
            keys = ("best_val_acc", "best_epoch", "final_train_acc", "seconds")
            attrs.update({k: summary[k] for k in keys if k in summary})
            self._set_attrs(r.trial_id, attrs)
            self._tell(r, summary["final_val_acc"])
            self.counts["done"] += 1
            self._event("complete", r)
            return
        if rc == EXIT_DIVERGED:
            failure, reason = "diverged", outcome.get("reason", "the loss became NaN")
        elif rc == EXIT_USER_ERROR:
            failure, reason = "error", outcome.get("reason", "bad input")
        else:
            if r.stderr_reader is not None:  # its last lines may still be on their way
                r.stderr_reader.join(timeout=EOF_GRACE_SECONDS)
            reason = _crash_reason(rc, r.stderr_tail)
            failure = "oom" if "out of memory" in reason.lower() else "crash"
        retry = failure in ("crash", "oom") and r.attempt < self.max_retries
        attrs.update({"failure": failure, "fail_reason": reason, "requeued": retry})
        self._set_attrs(r.trial_id, attrs)
        if self._tell(r, state=optuna.trial.TrialState.FAIL) and retry:
            self._requeue(self.study._storage.get_trial(r.trial_id), r.attempt + 1)
        if not retry:
            self.counts["failed"] += 1
        self._event("retry" if retry else "fail", r, reason)

    def _tell(self, r: Running, value: float | None = None, state: Any = None) -> bool:
        return self._tell_trial(r.trial_id, r.number, value, state)

    def _tell_trial(
        self, trial_id: int, number: int, value: float | None = None, state: Any = None
    ) -> bool:
        """Finish the trial; False if it was already finished (by an earlier write whose answer
        was lost, or by another driver that judged it stale)."""
        if self.study._storage.get_trial(trial_id).state.is_finished():
            return False
        if state is None:
            self.study.tell(number, value)
        else:
            self.study.tell(number, state=state)
        return True

    def _stop_all(self) -> None:
        """Stop every trial process group (SIGTERM, then SIGKILL after a grace period)."""
        for r in self.running.values():
            _stop_group(r.proc)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for r in self.running.values():
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop_group(r.proc, signal.SIGKILL)
                r.proc.wait()

    def _record_interrupted(self) -> None:
        """After Ctrl-C: the trials that were running are failed as interrupted and re-queued."""
        import optuna

        self._wait_for_events(0.1)  # epochs that finished while stopping
        self._finish_pending()
        for r in list(self.running.values()):
            if self.study._storage.get_trial(r.trial_id).state.is_finished():
                continue  # taken over by another driver, or recorded just before Ctrl-C
            self._flush(r)
            self._set_attrs(
                r.trial_id,
                {
                    "epochs_done": r.epochs_done,
                    "failure": "interrupted",
                    "fail_reason": "interrupted (Ctrl-C); resumable",
                    "requeued": True,
                    "resumed_from_epoch": r.resumed_from,
                },
            )
            if self._tell(r, state=optuna.trial.TrialState.FAIL):
                self._requeue(self.study._storage.get_trial(r.trial_id), r.attempt)
            self._event("interrupted", r)
        self.running.clear()

    def _set_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        for key, value in attrs.items():
            self.study._storage.set_trial_user_attr(trial_id, key, value)

    def _all_configs_complete(self) -> bool:
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        complete = optuna.trial.TrialState.COMPLETE
        done = {t.user_attrs.get("config_id") for t in trials if t.state == complete}
        return {t.user_attrs["config_id"] for t in trials if _configured(t)} <= done

    # --- display ------------------------------------------------------------------------------
    def _event(self, kind: str, r: Running, detail: str = "") -> None:
        if self.display is not None:
            self.display.event(kind, r, detail)

    def _note(self, text: str) -> None:
        if self.display is not None:
            self.display.note(text)

    def _show(self) -> None:
        if self.display is not None:
            self.display.update(self)


def _holds_result_or_is_pending(trial: optuna.trial.FrozenTrial) -> bool:
    import optuna

    state = trial.state
    if state == optuna.trial.TrialState.FAIL:
        return trial.user_attrs.get("failure") == "diverged"  # a result, not an accident
    return True


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _crash_reason(rc: int | None, stderr_tail: Iterable[str]) -> str:
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        return f"killed by {name}"
    lines = [line.strip() for line in stderr_tail if line.strip()]
    return lines[-1][:500] if lines else f"exited with code {rc}"


def _keep_stderr(r: Running) -> None:
    """Drain a trial's stderr: the last lines in memory, every line to its log (best effort:
    a log that cannot be written, e.g. on a full disk, must not lose the lines in memory)."""
    assert r.proc.stderr is not None
    log: Any = None
    with contextlib.suppress(OSError):
        log = r.log.open("a")
    for line in r.proc.stderr:
        r.stderr_tail.append(line)
        if log is not None:
            try:
                log.write(line)
                log.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    log.close()
                log = None
    if log is not None:
        with contextlib.suppress(OSError):
            log.close()


def _cannot_be_written(e: BaseException, url: str) -> bool:
    """A database error that waiting will not cure: a full disk, or any SQLite error but a
    busy lock (a local file has no outages to ride out)."""
    text = str(getattr(e, "orig", None) or e).lower()
    if "disk is full" in text or "no space left" in text or "diskfull" in text:
        return True
    return url.startswith("sqlite") and not ("locked" in text or "busy" in text)


def _configured(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether bopsweep gave the trial its configuration (it can run and be re-queued)."""
    return "config_id" in trial.user_attrs and "config" in trial.user_attrs


def _describe(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@dataclass
class DispatchOptions:
    """Where and how a study's trials run (the command line's dispatch options)."""

    storage: str
    checkpoint_dir: Path | None = None
    device: str = "auto"
    gpus: list[int] | None = None
    per_gpu: int = 1
    workers: int | None = None
    max_retries: int = 2
    quiet: bool = False
    data_dir: str | None = None
    download: bool = False
    worker_index: int = 0
    heartbeat_interval: int = 60
    grace_period: int = 600
    queue_only: bool = False
    max_trials: int = MAX_TRIALS


def run_study(spec: Any, options: DispatchOptions, echo: Any = print) -> int:
    """Create (or join) the study, queue what is missing, run it to the end; the exit code.

    Ctrl-C or SIGTERM at any moment, setting up included, ends it with 130 and the command
    that continues it; nothing is left RUNNING that ``resume`` could not pick up.
    """
    from bopsweep.store import redact

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with _signals_deferred():
            import optuna  # noqa: F401
            import torch  # noqa: F401
        code = _run_study(spec, options, echo)
    except KeyboardInterrupt:
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 130:
        echo(
            f"interrupted; finished trials are saved. Continue with: bopsweep resume "
            f"--storage {redact(options.storage)} --study {spec.name}"
        )
    return code


def _run_study(spec: Any, options: DispatchOptions, echo: Any) -> int:
    from dataclasses import replace

    from bopsweep.data import resolve_data_dir
    from bopsweep.display import StudyDisplay
    from bopsweep.store import Store, checkpoint_root, driver_lock, redact
    from bopsweep.studies import expand

    planned = expand(spec, options.max_trials)  # all valid before anything is written
    slots = make_slots(options.device, options.gpus, options.per_gpu, options.workers)
    data_dir = options.data_dir or spec.base.data_dir
    # resolved once here (downloading if asked), so trial processes never download
    local = {
        "data_dir": str(resolve_data_dir(_path(data_dir), options.download).resolve()),
        "download": False,
    }
    # the study keeps what it needs to be resumed without repeating the options
    spec = replace(spec, base=replace(spec.base, data_dir=local["data_dir"], download=False))
    shared = not options.storage.startswith("sqlite")
    if options.heartbeat_interval < 1 or options.grace_period < 2 * options.heartbeat_interval:
        raise UserError(
            "--heartbeat-interval must be >= 1 s and --grace-period at least twice it "
            f"(got {options.heartbeat_interval} and {options.grace_period})"
        )
    root = checkpoint_root(options.storage, spec.name, options.checkpoint_dir)
    _check_folder(root)
    beat = (options.heartbeat_interval, options.grace_period, options.max_retries)
    store = Store(options.storage, create=True, heartbeat=beat if shared else None)
    with driver_lock(options.storage):
        study, _ = store.create(spec)
        search = _search(spec, study, options.worker_index)
        display = StudyDisplay(spec.name, quiet=options.quiet or not sys.stderr.isatty())
        driver = Driver(
            store,
            study,
            slots,
            root,
            local,
            options.max_retries,
            display,
            search,
            heartbeat_interval=options.heartbeat_interval if shared else None,
        )
        recovered = 0 if shared else driver.recover_stale()
        added = driver.enqueue_missing(planned)
        if search is not None:
            what = f"{driver.counted()} of {search.trials} trials exist"
        else:
            what = f"{len(planned)} configurations, {added} newly queued"
        echo(
            f"study {spec.name} ({spec.kind}) in {redact(options.storage)}: {what}, "
            f"{recovered} resumed after an interruption; "
            + (
                "queued only"
                if options.queue_only
                else f"running on {', '.join(s.name for s in slots)}"
            )
        )
        if options.queue_only:
            return 0
        with display:
            code = driver.run()
    if code != 130:
        done = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
        pruned = f", {driver.counts['pruned']} pruned" if search is not None else ""
        echo(
            f"study {spec.name}: {done} trials complete{pruned}, {driver.counts['failed']} "
            f"failed; checkpoints in {root}"
        )
    return code


def _check_folder(folder: Path) -> None:
    """The trial folders' root must be a folder that exists or can be made: checked before the
    study is touched, so a bad --checkpoint-dir fails no trial."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot keep trial folders in {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot keep trial folders in {folder}: {existing} is not writable")


def _search(spec: Any, study: optuna.Study, worker_index: int) -> Search | None:
    """For an Optuna study: what to sample; gives the study its sampler and pruner."""
    if spec.kind != "optuna":
        return None
    from bopsweep.search import SearchSpace, make_pruner, make_sampler

    meta = spec.meta
    seed = meta["sampler_seed"]
    if seed is not None:
        # Deterministic from scratch, yet new draws when resumed (a sampler seeded as before
        # would repeat its first suggestions), and different for each worker of a study.
        seed += 1_000_003 * worker_index + len(study.get_trials(deepcopy=False))
        seed %= 2**32  # what numpy's generators, behind Optuna's samplers, accept
    study.sampler = make_sampler(meta["sampler"], seed)
    study.pruner = make_pruner(meta["pruner"], spec.base.epochs)
    return Search(SearchSpace.from_dict(meta["space"]), spec.base, meta["trials"])


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then raised as KeyboardInterrupt.

    For imports: an exception in the middle of torch's import leaves the interpreter unable
    to exit cleanly (it dies by SIGINT), whatever catches the exception.
    """
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
