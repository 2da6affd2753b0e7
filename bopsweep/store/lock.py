"""One driver per SQLite database file, proven by the file itself."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from bopsweep.errors import UserError
from bopsweep.store.urls import database_file


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: SQLite cannot arbitrate between two (no SELECT … FOR UPDATE).

    The lock is an exclusive ``flock`` on the database file itself, so it belongs to the file's
    inode: a symlink, a hard link, URL options (``?timeout=30``) or a moved file all meet the
    same lock, and no command can replace or remove it (there is no lock file to delete or to
    export over). The kernel drops it when the driver dies, ``kill -9`` included. Every command
    that writes trials takes it.

    ``flock`` and SQLite's own locks (POSIX ``fcntl`` locks) are independent on Linux; the
    descriptor stays open until the driver is done, because closing any descriptor of the file
    would drop the POSIX locks SQLite holds on it in this process.
    """
    path = database_file(url)
    if path is None:
        yield
        return
    try:
        # an empty file is a new SQLite database: the study command's Store makes it anyway
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise UserError(f"cannot open the database {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another bopsweep driver is running on {path}; wait for it to finish or stop "
                "it first"
            ) from None
        yield
    finally:
        os.close(fd)
