"""Writing a user's files so that a crash, a kill or a full disk never leaves half of one.

Every file bopsweep writes for a user (CSV and JSON exports, figures, run folders' CSVs and
configs) goes through :func:`atomic_open`: the data is written to a temporary file in the same
folder, flushed to disk, and renamed over the target only once complete. A reader sees the old
file or the new one, never a mix; an interrupted write leaves the old file untouched and no
temporary file behind.

A process killed outright (``kill -9``, out of memory, a power cut) cannot remove its temporary
file or folder; the next write beside it does (:func:`remove_stale_temps`). Whoever writes one
holds an advisory lock (``flock``) on it from its creation to its rename, which the kernel drops
when the process dies: a temporary that nobody holds is stale, one that somebody holds is never
touched, whichever process or host writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bopsweep.errors import UserError

SQLITE_MAGIC = b"SQLite format 3\x00"

# bopsweep's own temporary names, and only those are ever removed as stale: a file of
# atomic_open, ".NAME.XXXXXXXX.tmp" (tempfile's 8 random characters), and a folder of
# temp_folder, ".NAME.tmp-HEX" or ".NAME.old-HEX" (12 hex digits)
_FILE_TAIL = r"\.[a-z0-9_]{8}\.tmp"
_FOLDER_TAIL = r"\.(?:tmp|old)-[0-9a-f]{12}"


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (text; ``kwargs`` as for :func:`open`, e.g. ``newline=""``) or ``"wb"``.
    On an exception (Ctrl-C included) the temporary file is removed and ``path`` is unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    remove_stale_temps(path.parent, path.name)  # of a killed earlier write: room on a full disk
    fd, tmp = _held_temp_file(path)
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp's 0600 would hide the file from the group
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # before the lock goes with the file: never taken for stale
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _held_temp_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` (its descriptor and name), locked."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if _hold(fd) and not _still_at(fd, tmp):
            os.close(fd)  # taken for stale between mkstemp and flock: gone, make another
            continue
        return fd, tmp


@contextlib.contextmanager
def temp_folder(parent: Path, name: str, kind: str = "tmp") -> Iterator[Path]:
    """A new folder ``parent/.NAME.KIND-HEX`` (``kind``: "tmp" or "old"), with the permissions
    of a plain mkdir (``tempfile.mkdtemp``'s 0700 would hide it from the group), held while the
    block runs; removed if the block raises. The block renames it away or removes it."""
    if kind not in ("tmp", "old"):
        raise ValueError(f"temp_folder kinds are 'tmp' and 'old', not {kind!r}")
    while True:
        folder = Path(parent) / f".{name}.{kind}-{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        if not _hold(fd) or _still_at(fd, folder):
            break
        os.close(fd)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def _hold(fd: int) -> bool:
    """Lock ``fd`` for as long as it is open (waiting only while a cleanup looks at it); False
    where the file system has no locks, whose temporaries are then never taken for stale."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        return False
    return True


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders of bopsweep's writes to ``folder/NAME`` (``name``
    None: to any file there) that a killed process left: named as :func:`atomic_open` and
    :func:`temp_folder` name theirs, and held by no live process. A temporary a live writer
    holds, a user's file of another name, a link: left alone. The removed, in name order."""
    stem = r"\." + (re.escape(name) if name is not None else r".+")
    file_name, folder_name = re.compile(stem + _FILE_TAIL), re.compile(stem + _FOLDER_TAIL)
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries)
    except OSError:
        return []
    removed = []
    for entry in names:
        is_file, is_folder = file_name.fullmatch(entry), folder_name.fullmatch(entry)
        if (is_file or is_folder) and _remove_if_stale(Path(folder) / entry, bool(is_folder)):
            removed.append(Path(folder) / entry)
    return removed


def _remove_if_stale(path: Path, folder: bool) -> bool:
    try:  # O_NOFOLLOW: a link is not ours; O_NONBLOCK: a fifo of that name must not hang us
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        kind = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(kind) if folder else stat.S_ISREG(kind)):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live writer (or no locks)
        if not _still_at(fd, path):
            return False
        if folder:
            shutil.rmtree(path, ignore_errors=True)
            return not path.exists()
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _still_at(fd: int, path: str | Path) -> bool:
    """Whether the file open as ``fd`` is still the one named ``path``."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a batch system's time limit) raised as KeyboardInterrupt while the
    block runs, so that it removes its temporary files as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
