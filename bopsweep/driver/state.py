"""What the driver knows of the trials it runs, and the snapshots it hands the display."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bopsweep.attr_keys import CONFIG_ID, EPOCHS_DONE
from bopsweep.driver.protocol import EXIT_BUSY, EXIT_DIVERGED, EXIT_USER_ERROR
from bopsweep.driver.queue import configured
from bopsweep.metric_keys import EPOCH, PI, VAL_ACC
from bopsweep.store.trial_config import trial_setting

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from bopsweep.driver.process import Slot, TrialProcess

# the events of a trial's end (:attr:`bopsweep.driver.outcome.Ending.event`): their lines carry
# the study's progress
END_EVENTS = frozenset({"complete", "pruned", "fail", "retry"})


class Display(Protocol):
    """What the driver shows as it runs. The command line hands it one
    (:class:`bopsweep.cli.display.StudyDisplay`); without one it shows nothing."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def event(self, kind: str, r: TrialView, detail: str = "") -> None: ...
    def note(self, text: str) -> None: ...
    def wants_update(self) -> bool: ...
    def update(self, snapshot: Snapshot) -> None: ...


@dataclass
class Running:
    """A trial this driver runs: its identity, its process, and metrics not yet written."""

    number: int
    trial_id: int
    config_id: str
    label: str
    config: dict[str, Any]
    slot: Slot
    attempt: int
    epochs: int
    process: TrialProcess | None = None
    pending_rows: list[dict[str, Any]] = field(default_factory=list)
    pending_steps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    resumed_from: int = 0
    last_val: float | None = None
    last_pi: float | None = None
    last_message: dict[str, Any] | None = None  # its ending: done, diverged or error
    pruned_at: int | None = None
    retry_of: int | None = None  # the stale trial of another driver this one continues
    abandoned: bool = False  # judged stale by another driver, which re-queued it
    owner: str | None = None  # its attempt's owner token: every write carries it (fencing)
    refused: bool = False  # a write was refused: no longer this driver's trial
    member: int | None = None  # its place in a stacked trial process (--stack), if any
    run_dir: Path | None = None
    provenance: dict[str, Any] | None = None  # its process's (bopsweep.trial.provenance)

    @property
    def proc(self) -> TrialProcess:
        assert self.process is not None, "the trial's process is not started"
        return self.process

    @property
    def key(self) -> str:
        """Its key among the driver's running trials: the slot, and its place in a stack."""
        return self.slot.name if self.member is None else f"{self.slot.name}#{self.member}"

    @property
    def returncode(self) -> int | None:
        """How its process ended, for this trial: a stack's member ends by its own last
        message (done, diverged, error) while the process goes on; one without an ending
        message ends as the process did (a crash, a kill)."""
        rc = self.proc.returncode
        if self.member is None or self.last_message is None:
            return rc
        codes: dict[str, int | None] = {
            "done": 0,
            "diverged": EXIT_DIVERGED,
            "error": EXIT_USER_ERROR,
            "busy": EXIT_BUSY,
        }
        return codes.get(str(self.last_message.get("type")), rc)

    def ended(self) -> bool:
        """Its process exited, or, in a stack, it sent its ending message."""
        ending = self.member is not None and self.last_message is not None
        return ending or self.proc.exited()

    def may_be_pruned(self) -> bool:
        """Whether the pruner is asked after its latest epoch: not once it is pruned, and not
        after its last epoch, when it has finished (its process is sending ``done`` and
        exiting; a stop then would race that ending and could turn a finished trial into a
        crash that is run again)."""
        return self.pruned_at is None and self.epochs_done < self.epochs

    def stop(self) -> None:
        """Stop training it: its process, or its place in a stack (after the epoch in
        progress, the others going on)."""
        if self.member is None:
            self.proc.stop()
        else:
            self.proc.command({"stop": self.member})

    def add_epoch(self, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        self.pending_rows.append(row)
        self.pending_steps[row[EPOCH]] = steps
        self.epochs_done = row[EPOCH]
        self.last_val, self.last_pi = row[VAL_ACC], row[PI]

    def view(self) -> TrialView:
        return TrialView(
            self.number, self.label or self.config_id, self.slot.name, self.epochs,
            self.epochs_done, self.resumed_from, self.last_val, self.last_pi,
            dict(self.progress), self.pruned_at, self.retry_of,
        )  # fmt: skip


@dataclass(frozen=True)
class TrialView:
    """A running trial as the display shows it."""

    number: int
    label: str
    slot: str
    epochs: int
    epochs_done: int
    resumed_from: int
    last_val: float | None
    last_pi: float | None
    progress: dict[str, Any]
    pruned_at: int | None
    retry_of: int | None


@dataclass(frozen=True)
class StudyProgress:
    """The whole study's progress, whichever driver ran what: configurations finished of all
    (a retry continues its configuration, so "trials" counts configurations), epochs done of
    all."""

    trials_done: int
    trials_total: int
    epochs_done: int
    epochs_total: int


def study_progress(
    trials: Iterable[FrozenTrial],
    base: Mapping[str, Any],
    local: Iterable[Running] = (),
    search: tuple[int, int] | None = None,
) -> StudyProgress:
    """The progress of a study from its trials (``base``: the study's base configuration, which
    they store their difference from) and this driver's running ones (``local``, whose latest
    epochs may not be written yet); ``search``: a search's total trials and epochs per trial,
    for the trials its sampler has not made yet.

    A configuration is finished once none of its trials is WAITING or RUNNING: COMPLETE,
    PRUNED, or FAIL and not re-queued (diverged, bad input, out of retries), as the driver
    counts them. Its epochs are those of its furthest trial (a retry resumes from a checkpoint
    and reports the restored epochs again); a finished configuration needs no more, so a
    pruned or failed one counts the epochs it did, not those it was planned for."""
    by_config: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if configured(t):
            by_config.setdefault(t.user_attrs[CONFIG_ID], []).append(t)
    running = {r.config_id: r.epochs_done for r in local}
    done = epochs_done = epochs_total = 0
    for cid, group in by_config.items():
        reached = max(
            running.get(cid, 0),
            *(max(t.intermediate_values, default=0) for t in group),
            *(int(t.user_attrs.get(EPOCHS_DONE, 0)) for t in group),
        )
        if any(t.state.name in ("WAITING", "RUNNING") for t in group):
            planned = max(int(trial_setting(group[-1].user_attrs, base, "epochs")), reached)
        else:
            done += 1
            planned = reached
        epochs_done += reached
        epochs_total += planned
    total = len(by_config)
    if search is not None:  # the trials the sampler has yet to make
        trials_total, epochs_per_trial = search
        epochs_total += max(0, trials_total - total) * epochs_per_trial
        total = max(total, trials_total)
    return StudyProgress(done, total, epochs_done, epochs_total)


@dataclass(frozen=True)
class Snapshot:
    """The study as this driver sees it, for the live display."""

    done: int
    failed: int
    pruned: int | None  # None: not a search, nothing is pruned
    queued: int
    running: list[TrialView]
    progress: StudyProgress | None = None  # None: not known (no database read yet)
