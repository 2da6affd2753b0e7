"""What the driver knows of the trials it runs, and the snapshots it hands the display."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bopsweep.driver.process import Slot, TrialProcess


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

    @property
    def proc(self) -> TrialProcess:
        assert self.process is not None, "the trial's process is not started"
        return self.process

    def add_epoch(self, row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        self.pending_rows.append(row)
        self.pending_steps[row["epoch"]] = steps
        self.epochs_done = row["epoch"]
        self.last_val, self.last_pi = row["val_acc"], row["pi"]

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
class Snapshot:
    """The study as this driver sees it, for the live display."""

    done: int
    failed: int
    pruned: int | None  # None: not a search, nothing is pruned
    queued: int
    running: list[TrialView]
