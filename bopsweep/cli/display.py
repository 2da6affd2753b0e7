"""What a person sees while a trial or a study trains: rich progress bars, or plain lines.

Plain lines (one per epoch, on stderr) are used with ``--quiet`` and when stderr is not a
terminal, so logs of batch jobs stay readable. A study shows its overall progress (trials and
epochs done, elapsed time, ETA) under its live table, or at the end of each trial's end line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bopsweep.driver.eta import EpochClock, duration
from bopsweep.driver.state import END_EVENTS

if TYPE_CHECKING:
    from rich.console import RenderableType

    from bopsweep.driver.state import Snapshot, TrialView


class TrainDisplay:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None
        self._epoch = 0

    def __enter__(self) -> TrainDisplay:
        if not self.quiet:
            self._bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def progress(self, p: Any) -> None:
        """A :class:`bopsweep.trial.train.Progress` snapshot."""
        if self._bar is None:
            return
        stats = f"loss {p.loss:.3f} acc {p.acc:.3f}"
        if p.pi is not None:
            stats += f" π {p.pi:.2f}"
        if p.val_acc is not None:
            stats += f" val {p.val_acc:.3f}"
        fields: dict[str, Any] = {"epoch": f"{p.epoch}/{p.epochs}", "stats": stats}  # task fields
        if self._task is None:
            self._task = self._bar.add_task("train", total=p.steps_per_epoch, **fields)
        elif p.epoch != self._epoch:  # the clock shows the time of the epoch in progress
            self._bar.reset(self._task, total=p.steps_per_epoch)
        self._epoch = p.epoch
        self._bar.update(self._task, completed=p.step, total=p.steps_per_epoch, **fields)

    def epoch(self, row: dict[str, Any], step_rows: list[dict[str, Any]]) -> None:
        line = (
            f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} "
            f"train_acc {row['train_acc']:.4f} val_loss {row['val_loss']:.4f} "
            f"val_acc {row['val_acc']:.4f} pi {row['pi']:.3f}"
        )
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)


class StudyDisplay:
    """Live table of a running study and its overall progress (rich), or one plain line per
    event. ``console`` and ``clock`` (seconds, monotonic) are the terminal's and the system's
    unless given (tests record the output and set the time)."""

    def __init__(
        self,
        study: str,
        quiet: bool,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study = study
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.epochs = EpochClock(clock())
        self._snapshot: Snapshot | None = None
        self._live: Any = None
        self._last = 0.0

    def __enter__(self) -> StudyDisplay:
        self.epochs = EpochClock(self.clock())  # the run starts now
        if not self.quiet:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def event(self, kind: str, r: TrialView, detail: str = "") -> None:
        where = f"trial {r.number} [{r.label}] on {r.slot}"
        if kind == "epoch":  # an epoch trained here (restored ones come without an event)
            self.epochs.epoch(self.clock())
        if kind == "start":
            line = f"{where}: started"
        elif kind == "epoch":
            if self._live is not None:
                return
            line = (
                f"{where}: epoch {r.epochs_done}/{r.epochs} "
                f"val_acc {r.last_val:.4f} pi {r.last_pi:.3f}"
            )
        elif kind == "complete":
            line = f"{where}: COMPLETE val_acc {r.last_val:.4f}"
        elif kind == "retry":
            line = f"{where}: FAILED ({detail}); re-queued"
        elif kind == "fail":
            line = f"{where}: FAILED ({detail})"
        elif kind == "continued":
            line = (
                f"{where}: continues trial {r.retry_of} of a stopped worker from its "
                f"checkpoint at epoch {r.resumed_from}"
            )
        elif kind == "restarted":
            line = (
                f"{where}: restarts trial {r.retry_of} of a stopped worker from scratch (no "
                f"checkpoint of it in {detail}; share --checkpoint-dir between machines to "
                "continue instead)"
            )
        elif kind == "taken_over":
            line = (
                f"{where}: judged stale by another worker (no heartbeat within the grace "
                "period) and re-queued there; stopped here, its retry continues"
            )
        elif kind == "pruned":
            line = f"{where}: PRUNED at epoch {r.pruned_at} (val_acc {r.last_val:.4f})"
        else:
            line = f"{where}: interrupted at epoch {r.epochs_done}; resumable"
        overall = self.overall()
        if kind in END_EVENTS and overall is not None and self._live is None:
            line += f"; study: {overall}"  # the live display shows it under its table
        self._print(line)

    def note(self, text: str) -> None:
        """A message about the study as a whole."""
        self._print(f"study {self.study}: {text}")

    def _print(self, line: str) -> None:
        """One log line, verbatim (labels hold brackets that rich would take for markup)."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def wants_update(self) -> bool:
        """Whether a new snapshot would be shown now (a live table, at most 4 times a second)."""
        now = time.monotonic()
        if self._live is None or now - self._last < 0.25:
            return False
        self._last = now
        return True

    def update(self, snapshot: Snapshot) -> None:
        """The study as the driver sees it now: shown live, or kept for the next end line."""
        self._snapshot = snapshot
        if self._live is not None:
            self._live.update(self.renderable())

    def overall(self) -> str | None:
        """The study's progress as one line: trials and epochs done, elapsed time and ETA
        (``ETA —`` until this run has trained an epoch); None before the first snapshot."""
        progress = self._snapshot.progress if self._snapshot is not None else None
        if progress is None:
            return None
        now = self.clock()
        eta = self.epochs.eta(progress.epochs_total - progress.epochs_done, now)
        return (
            f"{progress.trials_done}/{progress.trials_total} trials · "
            f"{progress.epochs_done}/{progress.epochs_total} epochs · "
            f"elapsed {duration(now - self.epochs.started)} · ETA {duration(eta)}"
        )

    def renderable(self) -> RenderableType:
        """The live view: the running trials' table, and the study's progress bar under it."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        s = self._snapshot
        if s is None:
            return Text("")
        table = Table(
            title=f"study {self.study}: {s.done} done · {len(s.running)} running · "
            f"{s.queued} queued · {s.failed} failed"
            + (f" · {s.pruned} pruned" if s.pruned is not None else ""),
            title_justify="left",
        )
        for column in (
            "trial",
            "configuration",
            "slot",
            "epoch",
            "step",
            "train acc",
            "val acc",
            "π",
        ):
            table.add_column(column)
        for r in s.running:
            p = r.progress
            table.add_row(
                str(r.number),
                Text(r.label),
                r.slot,
                f"{p.get('epoch', r.epochs_done)}/{r.epochs}",
                f"{p.get('step', 0)}/{p.get('steps_per_epoch', '?')}",
                f"{p['acc']:.3f}" if "acc" in p else "",
                f"{r.last_val:.3f}" if r.last_val is not None else "",
                f"{p['pi']:.2f}" if p.get("pi") is not None else "",
            )
        overall = self.overall()
        if s.progress is None or overall is None:
            return table
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            Text("study"),
            ProgressBar(
                total=max(1, s.progress.epochs_total), completed=s.progress.epochs_done, width=30
            ),
            Text(overall),
        )
        return Group(table, bar)
