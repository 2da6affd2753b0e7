"""The messages of a driver's trial processes, applied as they arrive: a resumed run's earlier
epochs, each new epoch's metric rows (and, where the search prunes, the pruner's verdict on its
learning curve), progress, and how the trial ended. The processes' reader threads put them on
one queue (:attr:`~bopsweep.driver.launch.Launcher.events`); the loop takes them off here.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from bopsweep.driver.launch import Events
    from bopsweep.driver.queue import TrialQueue
    from bopsweep.driver.recorder import Recorder
    from bopsweep.driver.state import Running


class TrialMessages:
    """The messages of one driver's trial processes. ``prunes``: the search has a pruner, so
    each epoch is written at once and the pruner asked; ``event(kind, r, detail)``: tell the
    display."""

    def __init__(
        self,
        events: Events,
        trials: TrialQueue,
        recorder: Recorder,
        prunes: bool,
        checkpoint_root: Path,
        event: Callable[..., None],
    ) -> None:
        self.events, self.queue, self.recorder = events, trials, recorder
        self.prunes, self.checkpoint_root, self._event = prunes, checkpoint_root, event

    def wait(self, timeout: float) -> None:
        """Handle every message that arrives within ``timeout`` seconds, and those after it."""
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.handle(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def handle(self, r: Running, msg: dict[str, Any] | None) -> None:
        """Apply one message of ``r``'s process (None: its output ended)."""
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
                if r.may_be_pruned() and self.queue.should_prune(r.trial_id):
                    r.pruned_at = r.epochs_done
                    r.stop()
        elif kind == "progress":
            r.progress = msg
        elif kind == "provenance":  # written with its end
            r.provenance = msg["provenance"]
        else:  # done, diverged, error; stopped (a pruned member of a stack)
            r.last_message = msg
