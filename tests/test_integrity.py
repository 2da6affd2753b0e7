"""What a user types never loses or corrupts a study: exports, read-only commands, deletions.

Each test goes through the command line, on a real SQLite database holding a bopsweep study
made the way the driver makes one (the study, a trial, its metric rows).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bopsweep.folders import open_study_folder
from bopsweep.store import Store, driver_lock
from tests.helpers import invoke, make_study, one_line_error, study_folder


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# --- export never overwrites what it should not --------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_refuses_to_overwrite_the_study_database(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    before = digest(tmp_path / "study.db")
    for target in ("study.db", str(tmp_path / "study.db")):
        for force in ([], ["--force"]):
            result = invoke(["export", "study.db", "-o", target, "--format", fmt, *force])
            one_line_error(result, "is the study's database")
    assert digest(tmp_path / "study.db") == before


def test_export_refuses_any_database_and_existing_files_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    make_study(tmp_path / "other.db")
    other = digest(tmp_path / "other.db")
    for force in ([], ["--force"]):
        result = invoke(["export", "study.db", "-o", "other.db", *force])
        one_line_error(result, "bopsweep never overwrites a database")
    assert digest(tmp_path / "other.db") == other

    (tmp_path / "notes.csv").write_text("my notes\n")
    one_line_error(invoke(["export", "study.db", "-o", "notes.csv"]), "--force")
    assert (tmp_path / "notes.csv").read_text() == "my notes\n"
    one_line_error(invoke(["export", "study.db", "-o", str(tmp_path)]), "is a folder")
    one_line_error(invoke(["export", "study.db", "-o", "no/such/dir/t.csv"]), "does not exist")
    assert not (tmp_path / "no").exists()

    result = invoke(["export", "study.db", "-o", "notes.csv", "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "notes.csv").read_text().startswith("number,")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_an_interrupted_export_leaves_the_old_file(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    (tmp_path / "trials.csv").write_text("the previous export\n")

    def interrupted(self, *args, **kwargs):
        args[0].write("number,state\n")  # half a file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    result = invoke(["export", "study.db", "--force"])
    assert result.exit_code == 130  # Ctrl-C
    assert (tmp_path / "trials.csv").read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db", "trials.csv"]


# --- commands that only read never write ------------------------------------------------------
def test_read_only_commands_leave_the_database_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    before = digest(tmp_path / "study.db"), sorted(p.name for p in tmp_path.iterdir())
    for command in (
        ["status", "study.db"],
        ["studies", "study.db"],
        ["export", "study.db", "-o", "out.csv"],
        ["plot", "study.db", "--out", "figs"],
    ):
        result = invoke(command)
        assert result.exit_code == 0, (command, result.output)
    after = (
        digest(tmp_path / "study.db"),
        sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out.csv", "figs")),
    )
    assert after == before  # no byte changed, no journal or lock file left


def test_read_only_commands_do_not_touch_an_empty_file_or_a_plain_optuna_database(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in ("status", "studies", "plot", "export"):
        one_line_error(invoke([command, str(empty)]), "empty file")
    assert empty.stat().st_size == 0

    plain = tmp_path / "optuna.db"
    optuna.create_study(study_name="theirs", storage=f"sqlite:///{plain}")
    before = digest(plain), tables(plain)
    one_line_error(invoke(["status", str(plain)]), "holds no bopsweep study")
    result = invoke(["studies", str(plain)])
    assert result.exit_code == 0 and "theirs" not in result.output
    one_line_error(invoke(["plot", str(plain)]), "holds no bopsweep study")
    assert (digest(plain), tables(plain)) == before
    assert not {"bopsweep_epochs", "bopsweep_steps"} & tables(plain)


def test_a_database_whose_making_was_killed_is_named_so_and_left_alone(tmp_path):
    """A driver killed while Optuna was making its tables leaves them without their version
    row: read-only commands say the file holds no study instead of failing on a commit."""
    path = tmp_path / "study.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM version_info")
    before = digest(path)
    for command in ("status", "resume", "plot"):
        one_line_error(invoke([command, str(path)]), "holds no bopsweep study")
    assert digest(path) == before


def test_status_works_on_a_read_only_file_system(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        make_study(folder / "study.db")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        result = invoke(["status", str(folder / "study.db")])
        assert result.exit_code == 0, result.output
        assert "1 complete" in result.output
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- a deleted study's rows never come back ---------------------------------------------------
def test_a_study_deleted_by_the_optuna_cli_leaves_nothing_behind_in_a_new_one(tmp_path):
    db = tmp_path / "study.db"
    old_id = make_study(db, "first", epochs=5, acc=0.1)
    optuna_cli = Path(sys.executable).with_name("optuna")
    subprocess.run(
        [str(optuna_cli), "delete-study", "--study-name", "first", "--storage", f"sqlite:///{db}"],
        check=True,
        capture_output=True,
    )
    new_id = make_study(db, "second", epochs=2, acc=0.8)
    assert new_id == old_id  # SQLite gave the new trial the deleted one's id

    result = invoke(["export", str(db), "--metrics", "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "m.csv")
    assert metrics["epoch"].tolist() == [1, 2]  # the new trial's, none dropped
    assert metrics["val_acc"].tolist() == pytest.approx([0.81, 0.82])  # none of the old curve


# --- bopsweep delete -----------------------------------------------------------------------------
def test_delete_removes_the_study_its_rows_and_its_checkpoints(tmp_path):
    db = tmp_path / "study.db"
    make_study(db, "keep")
    make_study(db, "drop")
    drop, keep = study_folder(db, "drop"), study_folder(db, "keep")
    for name, folder in (("drop", drop), ("keep", keep)):
        open_study_folder(folder.parent, name, folder.name[-32:])
    (drop / "c0").mkdir()
    (drop / "c0" / "checkpoint.pt").write_bytes(b"x")

    result = invoke(["delete", str(db), "--study", "drop", "--checkpoints", "--yes"])
    assert result.exit_code == 0, result.output
    assert "deleted study drop" in result.output
    assert optuna.get_all_study_names(f"sqlite:///{db}") == ["keep"]
    assert not drop.exists()
    assert keep.exists()
    with sqlite3.connect(db) as conn:  # only the kept study's 3 epochs remain
        assert conn.execute("SELECT count(*) FROM bopsweep_epochs").fetchone()[0] == 3


def test_delete_asks_first_and_refuses_while_a_driver_runs(tmp_path):
    db = tmp_path / "study.db"
    make_study(db, "s")
    before = digest(db)
    one_line_error(invoke(["delete", str(db), "--study", "s"]), "pass --yes")
    result = invoke(["delete", str(db), "--study", "s"], input="n\n")
    assert result.exit_code != 0  # CliRunner's stdin is no TTY: still refused, nothing deleted
    one_line_error(invoke(["delete", str(db)]), "--study NAME")
    one_line_error(invoke(["delete", str(db), "--study", "nope", "--yes"]), "nope")
    with driver_lock(f"sqlite:///{db}"):
        result = invoke(["delete", str(db), "--study", "s", "--yes"])
        one_line_error(result, "another bopsweep driver is running")
    assert digest(db) == before


def test_delete_takes_a_study_a_killed_driver_left_running_trials_in(tmp_path):
    db = tmp_path / "study.db"
    make_study(db, "s")
    store = Store(f"sqlite:///{db}")
    optuna.load_study(study_name="s", storage=store.storage).ask()  # its driver was killed
    result = invoke(["delete", str(db), "--study", "s", "--yes"])
    assert result.exit_code == 0, result.output
    assert "1 left running by a driver that stopped" in result.output
    assert optuna.get_all_study_names(f"sqlite:///{db}") == []


def test_a_second_driver_through_a_symlink_or_url_options_is_refused(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    (tmp_path / "link.db").symlink_to(tmp_path / "study.db")
    before = digest(tmp_path / "study.db")
    with driver_lock("sqlite:///study.db"):
        for target in (["link.db"], ["--storage", "sqlite:///study.db?timeout=30"]):
            data = ["--data-dir", str(small_cifar_dir), "--device", "cpu"]
            result = invoke(["resume", *target, *data])
            one_line_error(result, "another bopsweep driver is running")
    assert digest(tmp_path / "study.db") == before


def test_files_written_whole_get_the_usual_permissions(tmp_path):
    import os

    from bopsweep.files import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.csv", "a\n")
        assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o644
        (tmp_path / "shared.csv").write_text("old\n")
        (tmp_path / "shared.csv").chmod(0o664)
        atomic_write_text(tmp_path / "shared.csv", "new\n")  # a replaced file keeps its mode
        assert (tmp_path / "shared.csv").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(umask)


def test_a_temporary_file_a_killed_write_left_is_removed_by_the_next_write_there_only(tmp_path):
    import os
    import tempfile

    from bopsweep.files import atomic_write_text

    def left_by_a_kill(name: str) -> Path:  # named exactly as atomic_open names its own
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=tmp_path)
        os.close(fd)
        return Path(tmp)

    stale, other = left_by_a_kill("trials.csv"), left_by_a_kill("figure.png")
    users = [".trials.csv.mine.tmp", "trials.csv.tmp", ".trials.csv.abcdefgh.tmp.bak"]
    for name in users:
        (tmp_path / name).write_text("a user's\n")
    (tmp_path / ".trials.csv.zzzzzzzz.tmp").symlink_to(tmp_path / users[0])
    atomic_write_text(tmp_path / "trials.csv", "a\n")
    assert not stale.exists()
    assert other.exists()  # another file's: left for the next write of that one
    names = {*users, other.name, ".trials.csv.zzzzzzzz.tmp", "trials.csv"}
    assert {p.name for p in tmp_path.iterdir()} == names
    assert (tmp_path / "trials.csv").read_text() == "a\n"


def test_export_never_replaces_a_device_a_fifo_a_broken_link_or_sqlite_s_own_files(
    tmp_path, monkeypatch
):
    import os

    monkeypatch.chdir(tmp_path)
    make_study(tmp_path / "study.db")
    os.mkfifo(tmp_path / "fifo")
    os.mknod(tmp_path / "null", 0o666 | 0o020000, os.makedev(1, 3))  # a character device
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere.csv")
    for target, fragment in (
        ("fifo", "not a regular file"),
        ("null", "not a regular file"),
        ("dangling", "broken link"),
        ("study.db-journal", "SQLite keeps beside the database"),
        ("study.db-wal", "SQLite keeps beside the database"),
    ):
        for force in ([], ["--force"]):
            result = invoke(["export", "study.db", "-o", target, *force])
            one_line_error(result, fragment)
    assert (tmp_path / "null").is_char_device() and (tmp_path / "fifo").is_fifo()
    assert not (tmp_path / "study.db-journal").exists() and not (tmp_path / "nowhere.csv").exists()
