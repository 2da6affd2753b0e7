"""Riding out a database outage: trial processes keep training while the driver retries.

A shared database (PostgreSQL) may be unreachable for a while (a restart, a network cut): the
driver keeps its metric rows and retries every few seconds, for up to 15 minutes. A database
that waiting cannot cure (a full disk, a local SQLite file that fails) ends the run at once;
finished trials and epochs are saved and ``bopsweep resume`` continues. A role that may not
write (permission denied) is bad input, not an outage: exit 2 at once
(:class:`DatabaseRefused`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bopsweep.driver.outcome import cannot_be_written
from bopsweep.errors import UserError
from bopsweep.store.failures import is_permission_denied, permission_message, reason

# optuna and sqlalchemy: imported where used, as a trial process loads this module

T = TypeVar("T")

DB_RETRY_SECONDS = 2.0
DB_OUTAGE_LIMIT_SECONDS = 900.0  # then the driver gives up: trials resume from checkpoints


def database_errors() -> tuple[type[BaseException], ...]:
    """The errors of the database itself (full, unreachable, gone), not of bopsweep's use of it."""
    import optuna
    import sqlalchemy.exc

    return (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        optuna.exceptions.StorageInternalError,
    )


class DatabaseLost(RuntimeError):
    """The database stayed unreachable for longer than the driver waits, or cannot be written."""


class DatabaseRefused(UserError):
    """The database refuses this role what the run needs (e.g. a role with SELECT only): no
    outage, so no retries; exit 2 with the reason."""


class Outage:
    def __init__(self, url: str, note: Callable[[str], None]) -> None:
        self.url, self.note = url, note
        self.since: float | None = None

    def failed(self, e: BaseException) -> None:
        """A write or read failed on the database: wait a little, or give up."""
        url = self.url
        if is_permission_denied(e):
            raise DatabaseRefused(permission_message(e, url))
        if cannot_be_written(e, url):
            raise DatabaseLost(
                f"the database cannot be written ({reason(e, url)}); trial "
                "processes stopped, finished trials and epochs are saved; fix it (free some disk "
                "space?) and run 'bopsweep resume'"
            )
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.note(
                f"the database is unreachable ({reason(e, url)}); "
                f"retrying for up to {DB_OUTAGE_LIMIT_SECONDS:.0f} s, trials keep training"
            )
        elif now - self.since > DB_OUTAGE_LIMIT_SECONDS:
            raise DatabaseLost(
                f"the database stayed unreachable for {DB_OUTAGE_LIMIT_SECONDS:.0f} s; trial "
                "processes stopped, finished trials are saved; run the same command (or "
                "'bopsweep resume') again when it is back"
            )
        time.sleep(DB_RETRY_SECONDS)

    def over(self) -> None:
        """A turn of the loop went through: the outage, if any, is over."""
        if self.since is not None:
            self.since = None
            self.note("the database is reachable again")

    def ride_out(self, read: Callable[[], T]) -> T:
        """``read()`` once the database answers: what a run does after its loop (the checks and
        the summary of a finished study) rides out an outage as the loop does, so a worker whose
        trials are all done never ends in failure because the server restarted meanwhile."""
        errors = database_errors()
        while True:
            try:
                result = read()
            except errors as e:
                self.failed(e)
            else:
                self.over()
                return result
