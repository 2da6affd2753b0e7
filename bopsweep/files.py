"""Writing a user's files so that a crash, a kill or a full disk never leaves half of one.

Every file bopsweep writes for a user (CSV and JSON exports, figures, run folders' CSVs and
configs) goes through :func:`atomic_open`: the data is written to a temporary file in the same
folder, flushed to disk, and renamed over the target only once complete. A reader sees the old
file or the new one, never a mix; an interrupted write leaves the old file untouched and no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bopsweep.errors import UserError

SQLITE_MAGIC = b"SQLite format 3\x00"


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (text; ``kwargs`` as for :func:`open`, e.g. ``newline=""``) or ``"wb"``.
    On an exception (Ctrl-C included) the temporary file is removed and ``path`` is unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp's 0600 would hide the file from the group
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` would give: the old file's, or 0666 less
    the umask (read from /proc where it can be, since setting it to read it races threads)."""
    try:
        return Path(path).stat().st_mode & 0o7777
    except OSError:
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a SQLite database (by its header), e.g. a study that must not be
    overwritten."""
    try:
        with Path(path).open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def check_output_file(output: Path, force: bool, database: Path | None) -> None:
    """A file a command may write (``database``: the real file of the study's database, if
    any): never a database (the study's or any other), a folder or a file in a missing folder;
    an existing file only with ``--force``."""
    db = database
    target = Path(os.path.realpath(output))
    if db is not None and target == db:
        raise UserError(f"{output} is the study's database; write the export to another file")
    if (
        db is not None
        and target.parent == db.parent
        and target.name in (db.name + "-journal", db.name + "-wal", db.name + "-shm")
    ):
        raise UserError(f"{output} is a file SQLite keeps beside the database; choose another")
    if output.is_symlink() and not output.exists():
        raise UserError(f"{output} is a broken link; give a plain file name")
    if output.exists() and not (output.is_file() or output.is_dir()):
        raise UserError(f"{output} is not a regular file (a device or a fifo?)")
    if output.is_dir():
        raise UserError(f"{output} is a folder; give a file name, e.g. {output / 'trials.csv'}")
    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: folder {output.parent} does not exist")
    if is_sqlite_file(output):
        raise UserError(f"{output} is a SQLite database; bopsweep never overwrites a database")
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to replace it")


def check_folder_target(folder: Path, what: str) -> None:
    """``folder`` exists as a folder or can be made: its nearest existing ancestor is a writable
    folder. Checked before anything is created, so bad input creates nothing. ``what`` names the
    use in the message ("cannot {what} in FOLDER: …")."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot {what} in {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot {what} in {folder}: {existing} is not writable")
