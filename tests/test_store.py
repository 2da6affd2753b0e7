"""Storage URLs, the database checks, the metric tables and the driver lock."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import optuna
import pytest

from bopsweep.errors import UserError
from bopsweep.store import Store, checkpoint_base, driver_lock, redact, scrub, storage_url
from bopsweep.store.database import OWN_TABLES
from bopsweep.store.optuna_adapter import all_trials, study_id, trial_id
from bopsweep.studies import TrialConfig, grid_study
from tests.helpers import invoke, leave_hot_journal, one_line_error


def test_storage_url_sources_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("BOPSWEEP_STORAGE", raising=False)
    assert storage_url() == "sqlite:///study.db"
    monkeypatch.setenv("BOPSWEEP_STORAGE", "sqlite:///env.db")
    assert storage_url() == "sqlite:///env.db"
    assert storage_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    assert storage_url(None, tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert storage_url("results.db") == "sqlite:///results.db"
    with pytest.raises(UserError, match="not a database URL"):
        storage_url("ftp://example.org/x")
    with pytest.raises(UserError, match="either as a path or as --storage"):
        storage_url("sqlite:///a.db", tmp_path / "b.db")


def test_passwords_are_redacted():
    assert (
        redact("postgresql://alice:s3cret@db.lab:5432/opt")
        == "postgresql://alice:***@db.lab:5432/opt"
    )
    assert redact("sqlite:///study.db") == "sqlite:///study.db"
    with pytest.raises(UserError) as e:
        storage_url("http://alice:s3cret@host/db")
    assert "s3cret" not in str(e.value)


def test_files_that_are_not_bopsweep_databases_are_refused(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("hello, this is not a database\n" * 4)
    with pytest.raises(UserError, match="not a SQLite database"):
        Store(f"sqlite:///{text}")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    with pytest.raises(UserError, match="database of another program"):
        Store(f"sqlite:///{other}")
    with pytest.raises(UserError, match="no such database"):
        Store(f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(UserError, match=r"folder .* does not exist"):
        Store(f"sqlite:///{tmp_path / 'no' / 'such.db'}", create=True)


def running_trial(store: Store, study_name: str = "s") -> optuna.Trial:
    study = optuna.create_study(study_name=study_name, storage=store.storage)
    return study.ask()


def test_metric_rows_are_written_once_per_trial_and_epoch(storage):
    store = Store(storage, create=True)
    trial = running_trial(store)
    study = optuna.load_study(study_name="s", storage=store.storage)
    rows = [{"epoch": 1, "val_acc": 0.5, "pi": -3.0}, {"epoch": 2, "val_acc": 0.6, "pi": -4.0}]
    steps = {1: [{"epoch": 1, "step": 5, "pi": -2.0}, {"epoch": 1, "step": 10, "pi": -2.5}]}
    store.metrics.write(study_id(study), trial_id(trial), rows, steps)
    store.metrics.write(study_id(study), trial_id(trial), rows[1:], {})  # replayed: kept once
    frame = store.metrics.epochs_frame(study)
    tid = trial_id(trial)
    assert frame[["trial_id", "epoch", "val_acc"]].values.tolist() == [[tid, 1, 0.5], [tid, 2, 0.6]]
    assert store.metrics.steps_frame(study)["step"].tolist() == [5, 10]
    assert store.metrics.epoch_counts(study) == {tid: 2}
    other = optuna.create_study(study_name="other", storage=store.storage)
    assert store.metrics.epochs_frame(other).empty


def test_epoch_progress_counts_each_trials_epochs_and_reads_its_last_row(storage):
    store = Store(storage, create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    first, second = study.ask(), study.ask()
    rows = [{"epoch": e, "val_acc": e / 10} for e in (2, 3, 1)]  # written out of order
    store.metrics.write(study_id(study), trial_id(first), rows, {})
    store.metrics.write(study_id(study), trial_id(second), [{"epoch": 1, "c2i": 0.5}], {})
    assert store.metrics.epoch_progress(study) == {
        trial_id(first): (3, {"epoch": 3, "val_acc": 0.3}),
        trial_id(second): (1, {"epoch": 1, "c2i": 0.5}),
    }


def test_a_frame_of_rows_with_different_columns_holds_them_all(storage):
    store = Store(storage, create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    trial = study.ask()
    rows = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.6, "c2i": 0.1}]
    steps = {1: [{"epoch": 1, "step": 5}], 2: [{"epoch": 2, "step": 10, "pi": -3.0}]}
    store.metrics.write(study_id(study), trial_id(trial), rows, steps)
    epochs = store.metrics.epochs_frame(study)
    assert list(epochs.columns) == ["trial_id", "epoch", "val_acc", "c2i"]
    assert epochs["val_acc"].tolist() == [0.5, 0.6]
    assert epochs["c2i"].isna().tolist() == [True, False]
    steps_frame = store.metrics.steps_frame(study)
    assert steps_frame["step"].tolist() == [5, 10]
    assert steps_frame["pi"].isna().tolist() == [True, False]


def test_rows_of_a_deleted_trial_never_attach_to_the_trial_that_reuses_its_id(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    old = running_trial(store, "old")
    old_study = optuna.load_study(study_name="old", storage=store.storage)
    store.metrics.write(study_id(old_study), trial_id(old), [{"epoch": 1, "val_acc": 0.1}], {})
    optuna.delete_study(study_name="old", storage=store.storage)  # what `optuna delete-study` does

    new = running_trial(store, "new")
    new_study = optuna.load_study(study_name="new", storage=store.storage)
    assert (trial_id(new), study_id(new_study)) == (trial_id(old), study_id(old_study))  # reused
    assert store.metrics.epochs_frame(new_study).empty  # the deleted trial's curve is not shown
    rows = [{"epoch": 1, "val_acc": 0.9}, {"epoch": 2, "val_acc": 0.95}]
    store.metrics.write(study_id(new_study), trial_id(new), rows, {})
    assert store.metrics.epochs_frame(new_study)["val_acc"].tolist() == [0.9, 0.95]  # none dropped
    with sqlite3.connect(tmp_path / "s.db") as conn:  # and the orphan row is gone
        assert conn.execute("SELECT count(*) FROM bopsweep_epochs").fetchone()[0] == 2


def test_legacy_metric_tables_are_upgraded_and_keep_their_rows(tmp_path):
    path = tmp_path / "legacy.db"
    store = Store(f"sqlite:///{path}", create=True)
    trial = running_trial(store)
    study = optuna.load_study(study_name="s", storage=store.storage)
    gone = trial_id(optuna.create_study(study_name="gone", storage=store.storage).ask())
    store.engine.dispose()
    with sqlite3.connect(path) as conn:  # the 0.1.0 schema: rows keyed on (trial_id, epoch)
        for name in ("bopsweep_epochs", "bopsweep_steps"):
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            legacy_schema(conn, name)
        rows = [(study_id(study), trial_id(trial), e, json.dumps({"epoch": e})) for e in (1, 2)]
        rows.append((99, gone + 1, 1, json.dumps({"epoch": 1})))  # an orphan of a deleted trial
        conn.executemany(
            "INSERT INTO bopsweep_epochs (study_id, trial_id, epoch, data) VALUES (?, ?, ?, ?)",
            rows,
        )
    readonly = Store.open_readonly(f"sqlite:///{path}")  # reads the old schema as it is
    assert readonly.metrics.epochs_frame(study)["epoch"].tolist() == [1, 2]

    upgraded = Store(f"sqlite:///{path}")
    assert upgraded.metrics.epochs_frame(study)["epoch"].tolist() == [1, 2]
    upgraded.metrics.write(study_id(study), trial_id(trial), [{"epoch": 3}], {})
    assert upgraded.metrics.epochs_frame(study)["epoch"].tolist() == [1, 2, 3]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM bopsweep_epochs").fetchone()[0] == 3
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert not any(t.endswith("_legacy") for t in tables)


def legacy_schema(conn: sqlite3.Connection, name: str, indexes: bool = True) -> None:
    """A metric table of bopsweep 0.1.0: rows keyed on (trial_id, epoch), no start time."""
    conn.execute(
        f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
        "trial_id INTEGER NOT NULL, epoch INTEGER NOT NULL, data TEXT NOT NULL, "
        f"CONSTRAINT {name}_trial_epoch UNIQUE (trial_id, epoch))"
    )
    if indexes:
        conn.execute(f"CREATE INDEX ix_{name}_trial_id ON {name} (trial_id)")


def schema(path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master").fetchall())


def metric_indexes(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows if name.startswith("ix_bopsweep")}


INDEXES = {f"ix_bopsweep_{t}_{c}" for t in ("epochs", "steps") for c in ("study_id", "trial_id")}


@contextlib.contextmanager
def failing(prefix: str) -> Iterator[None]:
    """Every SQL statement that starts with ``prefix`` fails in the driver, as on a full disk,
    on every engine."""
    import sqlalchemy as sa

    def execute(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(prefix):
            raise sqlite3.OperationalError("database or disk is full")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", execute)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", execute)


@pytest.mark.parametrize("copy", ["bopsweep_epochs", "bopsweep_steps"])
def test_an_upgrade_that_fails_during_the_copy_leaves_the_database_as_it_was(tmp_path, copy):
    path = tmp_path / "legacy.db"
    store = Store(f"sqlite:///{path}", create=True)
    trial = running_trial(store)
    study = optuna.load_study(study_name="s", storage=store.storage)
    store.engine.dispose()
    with sqlite3.connect(path) as conn:
        for name in ("bopsweep_epochs", "bopsweep_steps"):
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            legacy_schema(conn, name)
        conn.executemany(
            "INSERT INTO bopsweep_epochs (study_id, trial_id, epoch, data) VALUES (?, ?, ?, ?)",
            [(study_id(study), trial_id(trial), e, json.dumps({"epoch": e})) for e in (1, 2)],
        )
    before = schema(path)
    with failing(f"INSERT INTO {copy.upper()}"), pytest.raises(Exception, match="disk is full"):
        Store(f"sqlite:///{path}")
    assert schema(path) == before  # no table renamed, made or dropped; no index dropped
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM bopsweep_epochs").fetchone()[0] == 2

    upgraded = Store(f"sqlite:///{path}")
    assert upgraded.metrics.epochs_frame(study)["epoch"].tolist() == [1, 2]
    assert not any(name.endswith("_legacy") for name, _ in schema(path))
    assert metric_indexes(path) == INDEXES


def test_an_upgrade_an_older_bopsweep_left_half_done_is_finished(tmp_path, capsys):
    path = tmp_path / "half.db"
    store = Store(f"sqlite:///{path}", create=True)
    trial = running_trial(store)
    study = optuna.load_study(study_name="s", storage=store.storage)
    sid, tid = study_id(study), trial_id(trial)
    since = {"epoch": 2, "val_acc": 0.7}  # written after the interrupted upgrade: kept
    store.metrics.write(sid, tid, [since], {})
    store.engine.dispose()
    old = [(sid, tid, e, json.dumps({"epoch": e, "val_acc": e / 10})) for e in (1, 2)]
    old.append((sid, tid + 1, 1, json.dumps({"epoch": 1})))  # an orphan of a deleted trial
    bundle = json.dumps({"columns": ["epoch", "step"], "rows": [[1, 5], [1, 10]]})
    with sqlite3.connect(path) as conn:  # 0.1.x: killed after its renames, before the copies
        for name in ("bopsweep_epochs", "bopsweep_steps"):
            legacy_schema(conn, f"{name}_legacy", indexes=False)  # dropped before the rename
        conn.execute("DROP TABLE bopsweep_steps")  # killed before it was made again
        conn.executemany(
            "INSERT INTO bopsweep_epochs_legacy (study_id, trial_id, epoch, data) "
            "VALUES (?, ?, ?, ?)",
            old,
        )
        conn.execute(
            "INSERT INTO bopsweep_steps_legacy (study_id, trial_id, epoch, data) "
            "VALUES (?, ?, 1, ?)",
            (sid, tid, bundle),
        )
    before = path.read_bytes()
    readonly = Store.open_readonly(f"sqlite:///{path}")  # shows what it can; changes nothing
    assert readonly.metrics.steps_frame(study)["step"].tolist() == [5, 10]
    assert readonly.metrics.epochs_frame(study)["val_acc"].tolist() == [0.7]
    assert "bopsweep_epochs_legacy are not shown" in capsys.readouterr().err
    readonly.engine.dispose()
    assert path.read_bytes() == before

    finished = Store(f"sqlite:///{path}")
    assert finished.metrics.epochs_frame(study)["val_acc"].tolist() == [0.1, 0.7]
    assert finished.metrics.epoch_progress(study) == {tid: (2, since)}
    assert finished.metrics.steps_frame(study)["step"].tolist() == [5, 10]
    assert not any(name.endswith("_legacy") for name, _ in schema(path))
    assert metric_indexes(path) == INDEXES
    with sqlite3.connect(path) as conn:  # the orphan is dropped, and no row is there twice
        assert conn.execute("SELECT count(*) FROM bopsweep_epochs").fetchone()[0] == 2


def test_a_half_upgraded_table_whose_new_table_is_empty_reads_its_rows_read_only(tmp_path):
    path = tmp_path / "half.db"
    store = Store(f"sqlite:///{path}", create=True)
    trial = running_trial(store)
    study = optuna.load_study(study_name="s", storage=store.storage)
    store.metrics.ensure_tables()
    store.engine.dispose()
    with sqlite3.connect(path) as conn:
        legacy_schema(conn, "bopsweep_epochs_legacy", indexes=False)
        conn.execute(
            "INSERT INTO bopsweep_epochs_legacy (study_id, trial_id, epoch, data) "
            "VALUES (?, ?, 1, ?)",
            (study_id(study), trial_id(trial), json.dumps({"epoch": 1, "val_acc": 0.5})),
        )
    readonly = Store.open_readonly(f"sqlite:///{path}")
    assert readonly.metrics.epochs_frame(study)["val_acc"].tolist() == [0.5]
    assert readonly.metrics.epochs_frame(study, columns=["val_acc"])["val_acc"].tolist() == [0.5]
    assert readonly.metrics.epoch_counts(study) == {trial_id(trial): 1}


def test_metric_tables_come_with_their_indexes_or_not_at_all(tmp_path):
    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}", create=True)
    with failing("CREATE INDEX IX_BOPSWEEP_STEPS"), pytest.raises(Exception, match="disk is full"):
        store.metrics.ensure_tables()
    assert metric_indexes(path) == set()
    with sqlite3.connect(path) as conn:  # no table without its indexes
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert not tables & {"bopsweep_epochs", "bopsweep_steps"}
    store.metrics.ensure_tables()
    assert metric_indexes(path) == INDEXES


def test_a_second_driver_on_the_same_sqlite_file_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with (
        driver_lock(url),
        pytest.raises(UserError, match="another bopsweep driver is running"),
        driver_lock(url),
    ):
        pass
    with driver_lock(url):  # released when the first driver ends
        pass


def test_a_missing_database_driver_or_an_unreachable_server_gets_one_line():
    # pymysql is not a dependency: its absence is what a user without the extra sees
    with pytest.raises(UserError, match=r"driver .* is not installed; install it with"):
        Store("mysql+pymysql://u:pw@127.0.0.1:1/db")
    with pytest.raises(UserError, match=r"cannot open the database postgresql://u:\*\*\*@") as e:
        Store("postgresql://u:topsecret@127.0.0.1:1/db")
    assert "topsecret" not in str(e.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://:s3cretpw@db.lab/opt", "s3cretpw"),  # a password without a user
        ("postgresql://db.lab/opt?user=alice&password=s3cretpw", "s3cretpw"),  # in the query
        ("postgresql://alice:s3cr%40t@db.lab/opt", "s3cr%40t"),  # URL-encoded
        ("postgresql://alice:pw@db.lab/opt", ":pw@"),  # a short one
    ],
)
def test_every_form_of_password_is_redacted(url, secret):
    assert secret not in redact(url)
    assert "db.lab/opt" in redact(url)


def test_a_short_password_does_not_mangle_the_message_around_it():
    url = "postgresql://bob:a@host/db"
    message = f"cannot reach {url}: a server at host refused a connection"
    assert scrub(message, url) == (
        "cannot reach postgresql://bob:***@host/db: a server at host refused a connection"
    )
    url = "postgresql://bob:LongSecret99@host/db"
    assert scrub("conninfo password=LongSecret99 echoed LongSecret99", url) == (
        "conninfo password=*** echoed ***"
    )


def test_the_driver_lock_belongs_to_the_file_not_to_the_way_it_is_named(tmp_path, monkeypatch):
    (tmp_path / "study.db").touch()
    (tmp_path / "link.db").symlink_to(tmp_path / "study.db")
    monkeypatch.chdir(tmp_path)
    aliases = [
        "sqlite:///link.db",
        "sqlite:///study.db?timeout=30",
        f"sqlite:///{tmp_path}/./study.db",
    ]
    with driver_lock("sqlite:///study.db"):
        for alias in aliases:
            with (
                pytest.raises(UserError, match="another bopsweep driver is running"),
                driver_lock(alias),
            ):
                pass
    assert checkpoint_base("sqlite:///link.db") == tmp_path / "study.ckpt"
    assert checkpoint_base("sqlite:///study.db?timeout=30") == tmp_path / "study.ckpt"


def study_db(path) -> None:
    """A database holding one bopsweep-like study with one finished trial."""
    store = Store(f"sqlite:///{path}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage, direction="maximize")
    study.set_user_attr("bopsweep_spec", grid_study("s", TrialConfig(), {"tau": [1e-6]}).to_dict())
    study.add_trial(optuna.trial.create_trial(value=0.5))
    store.engine.dispose()


def test_opening_read_only_changes_no_byte_and_creates_no_table(tmp_path):
    path = tmp_path / "s.db"
    study_db(path)
    before = path.read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    store = Store.open_readonly(f"sqlite:///{path}")
    study = store.load(None)
    assert store.metrics.epochs_frame(study).empty and len(study.get_trials()) == 1
    store.engine.dispose()
    assert (path.read_bytes(), sorted(p.name for p in tmp_path.iterdir())) == before

    plain = tmp_path / "plain.db"  # Optuna's own database: no bopsweep tables are added to it
    optuna.create_study(study_name="o", storage=f"sqlite:///{plain}")
    before = plain.read_bytes()
    with pytest.raises(UserError, match="holds no bopsweep study"):
        Store.open_readonly(f"sqlite:///{plain}").load(None)
    assert plain.read_bytes() == before

    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UserError, match="empty file, not a bopsweep study"):
        Store.open_readonly(f"sqlite:///{empty}")
    assert empty.stat().st_size == 0


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only file system (a tmpfs remounted read-only; needs root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_read_only_commands_work_on_a_read_only_file_system(read_only_folder):
    study_db(read_only_folder / "s.db")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], check=True)
    store = Store.open_readonly(f"sqlite:///{read_only_folder / 's.db'}")
    assert [t.value for t in store.load(None).get_trials()] == [0.5]


def torn_on_disk(path) -> bool:
    """Whether the file itself (its journal ignored) differs from its last committed state."""
    try:
        with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
            names = conn.execute("SELECT study_name FROM studies").fetchall()
    except sqlite3.DatabaseError:  # e.g. a schema naming pages not yet written
        return True
    return names != [("s",)]


@pytest.mark.parametrize("opening", ["read-only", "read-write"])
def test_a_write_a_killed_process_left_half_done_is_rolled_back_on_open(tmp_path, opening):
    path = tmp_path / "s.db"
    study_db(path)
    leave_hot_journal(path)
    assert torn_on_disk(path)
    url = f"sqlite:///{path}"
    store = Store.open_readonly(url) if opening == "read-only" else Store(url)
    assert [t.value for t in store.load("s").get_trials()] == [0.5]  # as last committed
    assert not (tmp_path / "s.db-journal").exists() and not torn_on_disk(path)
    with sqlite3.connect(path) as conn:  # the unfinished write left nothing behind
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'torn'").fetchall() == []


def test_a_reader_already_open_when_a_writer_is_killed_mid_commit_reads_what_was_committed(
    tmp_path,
):
    path = tmp_path / "s.db"
    study_db(path)
    store = Store.open_readonly(f"sqlite:///{path}")
    assert store.bopsweep_studies() == ["s"]  # its connection is open
    leave_hot_journal(path)
    assert store.bopsweep_studies() == ["s"]
    assert [t.value for t in store.load("s").get_trials()] == [0.5]
    assert not (tmp_path / "s.db-journal").exists() and not torn_on_disk(path)


def test_a_half_done_write_on_a_read_only_file_system_is_one_clear_line(read_only_folder):
    study_db(read_only_folder / "s.db")
    leave_hot_journal(read_only_folder / "s.db")
    before = (read_only_folder / "s.db").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], check=True)
    result = invoke(["studies", str(read_only_folder / "s.db")])
    one_line_error(result, "left unfinished (s.db-journal)")
    assert (read_only_folder / "s.db").read_bytes() == before


def half_made(path) -> None:
    """Optuna's tables made in part, as a command killed (or out of disk) while it made them
    leaves them: SQLite commits each CREATE TABLE on its own."""
    optuna.storages.RDBStorage(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            if name.startswith("trial") or name in ("version_info", "alembic_version"):
                conn.execute(f"DROP TABLE {name}")


def test_a_database_whose_making_was_cut_short_is_made_by_the_next_run(tmp_path):
    path = tmp_path / "s.db"
    half_made(path)
    with pytest.raises(UserError, match="tables were left half made"):
        Store.open_readonly(f"sqlite:///{path}")
    store = Store(f"sqlite:///{path}", create=True)
    _, created = store.create(grid_study("g", TrialConfig(), {"gamma": [1e-7]}))
    assert created and Store.open_readonly(f"sqlite:///{path}").bopsweep_studies() == ["g"]


def test_own_tables_name_every_table_optuna_and_bopsweep_make(tmp_path):
    path = tmp_path / "s.db"
    study_db(path)
    Store(f"sqlite:///{path}").metrics.ensure_tables()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"trials", "bopsweep_epochs"} <= tables <= OWN_TABLES


# a study command killed (SIGKILL) between making its study and giving it its definition
KILLED_AT_DEFINITION = """
import os, signal, sys
import optuna
optuna.study.Study.set_user_attr = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
from bopsweep.cli import app
app(prog_name="bopsweep", args=sys.argv[1:])
"""


def test_a_study_whose_making_was_cut_short_is_made_by_the_next_run(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = ["grid", "--param", "tau", "--values", "1e-6", "--data-dir", str(small_cifar_dir)]
    args += ["--queue-only"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_DEFINITION, *args], cwd=tmp_path)
    assert killed.returncode == -9
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert optuna.get_all_study_names(url) == ["grid-tau"]
    with pytest.raises(UserError, match=r"'grid-tau' .* was left half made"):
        Store(url).load("grid-tau")
    again = invoke(args)
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="grid-tau", storage=url)
    assert study.user_attrs["bopsweep_spec"]["name"] == "grid-tau"
    assert [t.state.name for t in study.trials] == ["WAITING"]


def test_another_tool_s_study_of_the_same_name_is_never_taken_over(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    spec = grid_study("g", TrialConfig(), {"gamma": [1e-7]})
    minimized = optuna.create_study(study_name="g", storage=store.storage)
    with pytest.raises(UserError, match="not made by bopsweep"):
        store.create(spec)
    optuna.delete_study(study_name="g", storage=store.storage)
    used = optuna.create_study(study_name="g", storage=store.storage, direction="maximize")
    used.add_trial(optuna.trial.create_trial(value=0.5))
    with pytest.raises(UserError, match="not made by bopsweep"):
        store.create(spec)
    assert minimized.user_attrs == {} and used.user_attrs == {}


@pytest.mark.parametrize("password", ["qqq?x=1", "p/w", "a#b"])
def test_passwords_with_url_characters_are_redacted(password):
    url = f"postgresql://bob:{password}@127.0.0.1:1/db"
    assert password not in redact(url)
    assert password not in scrub(f"cannot open {url}: refused", url)


def _varied_trials(study: optuna.Study) -> None:
    """Trials in every state with params of each distribution, attributes, values (inf too)
    and intermediate values; and a second study, whose trials must not be read."""
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "layers": optuna.distributions.IntDistribution(1, 4),
        "opt": optuna.distributions.CategoricalDistribution(["bop", "bop2"]),
    }
    for k, state in enumerate(["COMPLETE", "PRUNED", "FAIL", "WAITING", "COMPLETE"]):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState[state],
                value=[0.5, float("inf")][k % 2] if state == "COMPLETE" else None,
                params={"lr": 10.0 ** -(k + 1), "layers": k % 4 + 1, "opt": ["bop", "bop2"][k % 2]},
                distributions=dists,
                user_attrs={"label": f"t{k}", "nested": {"a": [k]}},
                system_attrs={"sys": k},
                intermediate_values={1: 0.1 * k, 2: float("nan")} if state != "WAITING" else {},
            )
        )
    running = study.ask({"lr": dists["lr"]})  # RUNNING, with a start and no end
    running.report(0.3, 1)


def test_all_trials_reads_the_same_trials_as_optuna(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage, direction="maximize")
    _varied_trials(study)
    _varied_trials(optuna.create_study(study_name="other", storage=store.storage))
    expected = optuna.load_study(study_name="s", storage=store.storage).get_trials()
    got = all_trials(study)
    assert [trial_id(t) for t in got] == [trial_id(t) for t in expected]
    for a, b in zip(got, expected, strict=True):
        # FrozenTrial's == compares its fields; NaN != NaN, so intermediate values apart
        assert repr(a.intermediate_values) == repr(b.intermediate_values)
        a.intermediate_values = b.intermediate_values = {}
        assert a == b
    assert all(t.intermediate_values == {} for t in all_trials(study, intermediate_values=False))


def test_all_trials_of_an_in_memory_study_are_optunas():
    study = optuna.create_study()
    _varied_trials(study)
    assert all_trials(study) == study.get_trials()


def test_all_trials_gives_the_times_optuna_gives_outside_utc(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: an hour and a half-hour off
    time.tzset()
    try:
        store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
        study = optuna.create_study(study_name="s", storage=store.storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        expected = optuna.load_study(study_name="s", storage=store.storage).get_trials()
        got = all_trials(study)
        assert [(t.datetime_start, t.datetime_complete) for t in got] == [
            (t.datetime_start, t.datetime_complete) for t in expected
        ]
    finally:
        monkeypatch.undo()
        time.tzset()
