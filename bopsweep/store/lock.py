"""One driver per SQLite database file."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from bopsweep.errors import UserError
from bopsweep.store.urls import database_file


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: SQLite cannot arbitrate between two (no SELECT … FOR UPDATE).

    The lock belongs to the real file (symlinks resolved, URL options ignored), so
    ``link.db`` or ``sqlite:///study.db?timeout=30`` cannot start a second driver on study.db.
    Every command that writes trials takes it.
    """
    path = database_file(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        f = lock_path.open("a")
    except OSError as e:
        raise UserError(f"cannot write next to the database {path}: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another bopsweep driver is running on {path} (it holds {lock_path}); "
                "wait for it to finish or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
