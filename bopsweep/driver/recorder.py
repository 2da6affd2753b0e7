"""The driver's writes: metric rows in batches, learning curves, and how each trial ended.

The driver alone writes the database. A trial's epochs are written as metric rows and as the
trial's intermediate values (the learning curve Optuna's tools and pruners read); its end as
COMPLETE, PRUNED or FAIL with the reason (:mod:`bopsweep.driver.outcome` decides which), and
a crashed or interrupted trial's configuration is queued again. Every write is idempotent, so
a write that failed on the database is simply done again on a later turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import (
    ATTEMPT,
    EPOCHS_DONE,
    FAIL_REASON,
    FAILURE,
    PROVENANCE,
    REQUEUED,
    RESUMED_FROM,
    RUN_DIR,
    SLOT,
)
from bopsweep.driver import outcome
from bopsweep.driver.protocol import EXIT_DIVERGED, EXIT_USER_ERROR
from bopsweep.driver.queue import TrialQueue
from bopsweep.driver.state import Running
from bopsweep.metric_keys import EPOCH, VAL_ACC
from bopsweep.store.fencing import TrialTakenOver
from bopsweep.store.optuna_adapter import study_id
from bopsweep.store.trial_config import StoredConfigError

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from bopsweep.readers.tensorboard import StudyBoard
    from bopsweep.store import Store

Emit = Callable[[str, Running, str], None]


class Recorder:
    def __init__(
        self,
        store: Store,
        queue: TrialQueue,
        max_retries: int,
        emit: Emit,
        note: Any,
        board: StudyBoard | None = None,
        data: str | None = None,
    ) -> None:
        self.store, self.queue, self.max_retries = store, queue, max_retries
        self.data = data or None  # the fingerprint of the study's data, in each provenance
        self.emit, self.note = emit, note
        self.board = board  # TensorBoard runs of the trials (--tensorboard); never raises
        self.study_id = study_id(queue.study)
        self.counts = {"done": 0, "failed": 0, "pruned": 0}

    def flush(self, r: Running) -> None:
        """Write a trial's pending metric rows and intermediate values; cleared only once
        written. Raises :class:`~bopsweep.store.fencing.TrialTakenOver` (and marks the trial
        ``refused``) if another driver has taken the trial over: nothing is written."""
        if not r.pending_rows:
            return
        # the learning curve pruners judge: binary-weight epochs only (not a two-step run's
        # step 1, whose network has real kernels)
        real_until = r.config.get("two_step") or 0
        curve = {row[EPOCH]: row[VAL_ACC] for row in r.pending_rows if row[EPOCH] > real_until}
        try:  # rows and curve in one transaction, refused unless the trial is still ours
            self.store.metrics.write(
                self.study_id, r.trial_id, r.pending_rows, r.pending_steps, r.owner, curve
            )
        except TrialTakenOver:
            r.refused = True
            raise
        if self.board is not None:  # skips the epochs it has, should these rows come again
            self.board.epochs(r.trial_id, r.number, r.label, r.config_id, r.config, r.pending_rows)
        r.pending_rows, r.pending_steps = [], {}

    def finish(self, r: Running) -> None:
        """Record the end of a trial whose process exited."""
        if self.queue.is_finished(r.trial_id):
            # recorded already: Ctrl-C came after the write, before the driver noted it (a
            # missing re-queue is restored at the next start: TrialQueue.requeue_lost)
            return
        self.flush(r)
        rc = r.returncode
        done = rc == 0 and (r.last_message or {}).get("type") == "done"
        crashed = r.pruned_at is None and not done and rc not in (EXIT_DIVERGED, EXIT_USER_ERROR)
        ending = outcome.judge(
            rc,
            r.last_message,
            r.pruned_at,
            r.proc.last_words() if crashed else r.proc.stderr_tail,
            r.attempt,
            self.max_retries,
        )
        if ending.state == "COMPLETE":  # only with every epoch 1..N recorded
            stored = set(self.store.metrics.stored_epochs(r.trial_id))
            missing = [e for e in range(1, r.epochs + 1) if e not in stored]
            if missing:
                ending = outcome.incomplete(missing, r.attempt, self.max_retries)
        attrs = {
            EPOCHS_DONE: r.epochs_done,
            RESUMED_FROM: r.resumed_from,
            RUN_DIR: str(r.run_dir or r.proc.log.parent),
            SLOT: r.slot.name,
            **ending.attrs,
        }
        if r.provenance is not None:  # its process said it before it trained
            attrs[PROVENANCE] = {**r.provenance, "data": self.data}
        with self.queue.locked():  # the end and its retry: one step for others' queueing
            self.queue.set_attrs(r.trial_id, attrs)
            if self.queue.tell(r.trial_id, ending.state, ending.value) and ending.retry:
                attempt = r.attempt + ending.next_attempt_used
                self.queue.requeue(self.queue.trial(r.trial_id), attempt)
        if self.board is not None:
            self.board.end(r.trial_id, ending.state)
        if ending.state == "COMPLETE":
            self.counts["done"] += 1
        elif ending.state == "PRUNED":
            self.counts["pruned"] += 1
        elif not ending.retry:
            self.counts["failed"] += 1
        self.emit(ending.event, r, ending.reason)

    def fail_unstarted(self, trial: FrozenTrial, e: BaseException) -> None:
        """A trial whose process could not be started (its folder cannot be made, the disk is
        full, Ctrl-C): FAIL with the reason, re-queued like a crash (within --max-retries)."""
        interrupted = isinstance(e, KeyboardInterrupt)
        attempt = trial.user_attrs.get(ATTEMPT, 0)
        requeue = outcome.unstarted(attempt, self.max_retries, interrupted)
        if isinstance(e, StoredConfigError):  # unreadable as stored: no retry can run it
            requeue = None
        reason = f"could not start: {outcome.describe(e)}"
        self.queue.fail(trial, "interrupted" if interrupted else "crash", reason, requeue)
        if requeue is None:
            self.counts["failed"] += 1
        self.note(f"trial {trial.number} {reason}" + ("; re-queued" if requeue is not None else ""))

    def interrupted(self, r: Running) -> None:
        """After Ctrl-C: a trial that was running is failed as interrupted and re-queued."""
        if self.queue.is_finished(r.trial_id):
            return  # taken over by another driver, or recorded just before Ctrl-C
        self.flush(r)
        self.queue.set_attrs(
            r.trial_id,
            {
                EPOCHS_DONE: r.epochs_done,
                FAILURE: "interrupted",
                FAIL_REASON: "interrupted (Ctrl-C); resumable",
                REQUEUED: True,
                RESUMED_FROM: r.resumed_from,
            },
        )
        with self.queue.locked():
            if self.queue.tell(r.trial_id, "FAIL"):
                self.queue.requeue(self.queue.trial(r.trial_id), r.attempt)
        if self.board is not None:
            self.board.end(r.trial_id, "FAIL")
        self.emit("interrupted", r, "")
