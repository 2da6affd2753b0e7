"""What a person sees while a trial trains: a rich progress bar, or plain lines.

Plain lines (one per epoch, on stderr) are used with ``--quiet`` and when stderr is not a
terminal, so logs of batch jobs stay readable.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainDisplay:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None

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
        """A :class:`bopsweep.train.Progress` snapshot."""
        if self._bar is None:
            return
        stats = f"loss {p.loss:.3f} acc {p.acc:.3f}"
        if p.pi is not None:
            stats += f" π {p.pi:.2f}"
        if p.val_acc is not None:
            stats += f" val {p.val_acc:.3f}"
        fields = {"epoch": f"{p.epoch}/{p.epochs}", "stats": stats}
        if self._task is None:
            self._task = self._bar.add_task("train", total=p.steps_per_epoch, **fields)
        self._bar.update(self._task, completed=p.step, total=p.steps_per_epoch, **fields)

    def epoch(self, row: dict[str, Any], step_rows: list[dict[str, Any]]) -> None:
        line = (
            f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} "
            f"train_acc {row['train_acc']:.4f} val_loss {row['val_loss']:.4f} "
            f"val_acc {row['val_acc']:.4f} pi {row['pi']:.3f}"
        )
        if self._bar is not None:
            self._bar.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)
