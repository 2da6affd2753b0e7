"""What a driver shows as it runs: each trial's events, notes, and the study's progress.

The display itself is the command line's (:class:`~bopsweep.driver.state.Display`); this is the
driver's side of it: a line per event, and snapshots of the study taken so that reading the
study never stalls the driver's loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bopsweep.driver.progress import ProgressBook
from bopsweep.driver.state import END_EVENTS, Display, Running, Snapshot

# optuna and sqlalchemy: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from bopsweep.driver.queue import TrialQueue
    from bopsweep.store.metrics import MetricTables
    from bopsweep.studies.search import Search

SNAPSHOT_SHARE = 10  # a live snapshot at most every 10 times the time it took


class Showing:
    """Hands the display a driver's events and snapshots. ``counts`` gives the driver's counts
    of ended trials; ``runs`` its running trials and those whose end is being recorded."""

    def __init__(
        self,
        display: Display | None,
        trials: TrialQueue,
        metrics: MetricTables,
        search: Search | None,
        counts: Callable[[], dict[str, int]],
        runs: Callable[[], tuple[Iterable[Running], Iterable[Running]]],
    ) -> None:
        self.display, self.queue, self.search = display, trials, search
        self.counts, self.runs = counts, runs
        self._next_show = -math.inf  # no live snapshot before this (see show)
        self.book: ProgressBook | None = None  # made at the first snapshot
        self.metrics = metrics

    def event(self, kind: str, r: Running, detail: str = "") -> None:
        if self.display is not None:
            if kind in END_EVENTS:  # the line of a trial's end shows the study's progress
                self.refresh()
            self.display.event(kind, r.view(), detail)

    def note(self, text: str) -> None:
        if self.display is not None:
            self.display.note(text)

    def show(self) -> None:
        """A live snapshot, at most as often as the display wants one and so that reading the
        study takes at most a tenth of the loop's time (a slow database must not stall the
        loop's messages and heartbeats)."""
        if self.display is None or time.monotonic() < self._next_show:
            return
        if self.display.wants_update():
            start = time.monotonic()
            self.display.update(self.snapshot())
            self._next_show = start + SNAPSHOT_SHARE * (time.monotonic() - start)

    def refresh(self) -> None:
        """A fresh snapshot for the display; skipped while the database is unreachable (the
        trial's end is recorded already, and its line must come all the same)."""
        import optuna
        import sqlalchemy.exc

        if self.display is None:
            return
        with contextlib.suppress(
            sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError
        ):
            self.display.update(self.snapshot())

    def snapshot(self) -> Snapshot:
        """The study now: this driver's counts and running trials, and the study's progress
        from its :class:`~bopsweep.driver.progress.ProgressBook` (which reads only what changed
        since the last snapshot)."""
        if self.book is None:
            search = None  # a search's runs in all (K per configuration with --seeds K)
            if self.search is not None:
                search = (self.search.trials * self.search.seeds, self.search.base.epochs)
            self.metrics.ensure_tables()  # a no-op where the study's command made them
            self.book = ProgressBook(self.queue, self.metrics.epochs, search)
        self.book.poll()
        counts = self.counts()
        running, finishing = (list(rs) for rs in self.runs())
        return Snapshot(
            counts["done"],
            counts["failed"],
            counts["pruned"] if self.search is not None else None,
            self.book.waiting,
            [r.view() for r in running],
            self.book.progress([*running, *finishing]),
        )
