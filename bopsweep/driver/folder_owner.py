"""Which attempt of a trial owns its checkpoint folder, between trial processes.

A trial's folder is shared by its attempts (a retry continues from the checkpoint there), and
the process of an attempt that lost its trial may still be alive: its driver was stopped or
cut off from the database, or it was stopped itself, and another driver re-queued the trial.
One process writes the folder at a time: each holds the folder's ``.lock`` (``flock``) while it
trains. A new attempt that finds it held asks for the folder by writing its owner token to
``.owner``; the old process reads ``.owner`` every few steps and before each message, and exits
(:data:`~bopsweep.driver.protocol.EXIT_BUSY`) once it names another attempt, which then takes
the lock and continues from the last checkpoint. If the old process cannot answer (stopped, or
blocked on a driver that is stopped) the new attempt gives up after :data:`TAKEOVER_SECONDS`
and goes back to the queue without using up a retry; a later attempt finds the folder free.

Before any attempt starts, the driver makes the folder the trial's (:func:`adopt`): a run
another trial left there is removed, never resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import IO

from bopsweep.errors import UserError
from bopsweep.folders import safe_component, trial_marker
from bopsweep.trial.run_dir import RunDir

OWNER_FILE = ".owner"
LOCK_FILE = ".lock"
TAKEOVER_SECONDS = float(os.environ.get("BOPSWEEP_TAKEOVER_SECONDS", "30"))
POLL_SECONDS = 0.1


def adopt(run_dir: Path, config_id: str, identity: tuple[str, str] | None) -> bool:
    """The trial's folder, made, and marked as its study's run of ``config_id`` on its data
    (``identity``: the study's UUID and the data's fingerprint; None: the folder is only
    made); True if a run there of anything else was removed (it is never resumed).
    ``config_id`` is read from the database: one that is no plain folder name (``../x``)
    never becomes a path."""
    if safe_component(config_id) != config_id:
        raise UserError(f"its config_id {config_id!r} is not a folder name bopsweep makes")
    if identity is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return False
    study_uuid, data = identity
    return RunDir(run_dir).adopt(trial_marker(study_uuid, config_id, data))


def _try_lock(f: IO[str]) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def write_owner(run_dir: Path, owner: str) -> None:
    """Name ``owner`` as the folder's owner (atomically: a reader sees the old or the new)."""
    tmp = run_dir / f"{OWNER_FILE}.{os.getpid()}"
    tmp.write_text(owner)
    os.replace(tmp, run_dir / OWNER_FILE)


def read_owner(run_dir: Path) -> str | None:
    try:
        return (run_dir / OWNER_FILE).read_text()
    except OSError:
        return None


def acquire(
    run_dirs: list[Path],
    owners: list[str | None],
    stack: contextlib.ExitStack,
    take_over: list[bool] | None = None,
) -> list[bool]:
    """Take each folder's lock (held until ``stack`` closes) for the attempt ``owners[k]``:
    at once if it is free; else, where ``take_over[k]`` (the attempt is the retry of one the
    database failed as lost), after asking its holder to leave and waiting at most
    :data:`TAKEOVER_SECONDS` (all folders waited for together); per folder, whether it was
    got. A holder that is a live attempt of the same configuration is never asked to leave,
    and an attempt without a token (an older driver) only takes a free folder."""
    takes = take_over if take_over is not None else [False] * len(run_dirs)
    files = []
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
        files.append(stack.enter_context((run_dir / LOCK_FILE).open("a")))
    got = [_try_lock(f) for f in files]
    for k, (run_dir, owner) in enumerate(zip(run_dirs, owners, strict=True)):
        if owner is not None and (got[k] or takes[k]):
            write_owner(run_dir, owner)  # the holder, if any, sees it and leaves
    deadline = time.monotonic() + TAKEOVER_SECONDS
    waiting = [k for k, g in enumerate(got) if not g and owners[k] is not None and takes[k]]
    while waiting and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        for k in list(waiting):
            if _try_lock(files[k]):
                got[k] = True
                waiting.remove(k)
    return got


def taken_over(run_dir: Path, owner: str | None) -> bool:
    """Whether another attempt has asked for the folder of the attempt ``owner``."""
    if owner is None:
        return False
    current = read_owner(run_dir)
    return current is not None and current != owner
