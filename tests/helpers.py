"""Assertions and process look-ups shared by the tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def one_line_error(result: Any, fragment: str) -> None:
    """Bad input: exit code 2, one line starting ``bopsweep: error:`` that holds ``fragment``,
    and no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("bopsweep: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def command_lines() -> dict[int, list[str]]:
    """pid → arguments of every live process (zombies have none and are left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv != [b""]:
            found[int(entry.name)] = [a.decode(errors="replace") for a in argv]
    return found


def zygotes(driver_pid: int) -> list[int]:
    """Pids of the live warm-start zygotes of a driver: its pid is their second argument, and
    each leads a session of its own (unlike the processes it forks, while they still carry
    its command line)."""
    module = "bopsweep.driver.zygote"
    found = []
    for pid, argv in command_lines().items():
        if module in argv and argv[argv.index(module) + 2 :][:1] == [str(driver_pid)]:
            with contextlib.suppress(ProcessLookupError):
                if os.getsid(pid) == pid:
                    found.append(pid)
    return found


def warm_started(pid: int) -> bool:
    """Whether a process was forked by a zygote (it has the zygote's environment)."""
    environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return b"BOPSWEEP_WARM_START=1" in environ


def leave_hot_journal(db: Path) -> None:
    """Leave the SQLite file ``db`` as a process killed while it commits leaves it: a
    transaction that renames every study and fills a new table has spilled pages into the file
    (its journal synced first, so the journal is "hot"), then SIGKILL before it ends."""
    code = f"""
import os, signal, sqlite3
c = sqlite3.connect({str(db)!r}, isolation_level=None)
c.execute("PRAGMA cache_size=2")  # pages spill to the file long before the commit
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE studies SET study_name = study_name || '-torn'")
c.execute("CREATE TABLE torn(a)")
c.executemany("INSERT INTO torn VALUES (?)", [("x" * 500,)] * 2000)
os.kill(os.getpid(), signal.SIGKILL)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    journal = Path(f"{db}-journal").read_bytes()
    assert journal[:1] not in (b"", b"\0"), "the journal is not hot"


def study_folder(database: Path | str, study: str, root: Path | None = None) -> Path:
    """The folder of ``study``'s trial folders, ``ROOT/SLUG-UUID`` (ROOT: ``DB.ckpt`` beside
    a SQLite file, or ``root``), from the identity the database holds."""
    from bopsweep import folders
    from bopsweep.store import Store, checkpoint_base, storage_url, study_uuid

    url = str(database) if "://" in str(database) else storage_url(None, Path(database))
    identity = study_uuid(Store.open_readonly(url).load(study))
    assert identity is not None, f"study {study} has no identity"
    return folders.study_folder(checkpoint_base(url, root), study, identity)


def at_once(work, inputs: list) -> tuple[list, list]:
    """``work(x)`` for every input, each in its own thread, released together: (results,
    exceptions)."""
    import threading

    barrier, results, errors = threading.Barrier(len(inputs)), [], []

    def run(x) -> None:
        barrier.wait()
        try:
            results.append(work(x))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def as_of_0_1(db: Path | str) -> None:
    """Make the studies of database ``db`` (a SQLite file, or a URL) as bopsweep 0.1 left them:
    no schema version and no C2I mark (their C2I values are the caller's to write as 0.1 did)."""
    import sqlalchemy as sa

    from bopsweep.attr_keys import C2I_ATTR, SCHEMA_ATTR
    from bopsweep.store.urls import engine_url

    engine = sa.create_engine(engine_url(db if isinstance(db, str) else f"sqlite:///{db}"))
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM study_user_attributes WHERE key IN (:a, :b)"),
            {"a": C2I_ATTR, "b": SCHEMA_ATTR},
        )
    engine.dispose()
