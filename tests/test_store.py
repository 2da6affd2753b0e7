"""Storage URLs, the database checks, the metric tables and the driver lock."""

from __future__ import annotations

import sqlite3

import pytest

from bopsweep.errors import UserError
from bopsweep.store import Store, driver_lock, redact, storage_url


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


def test_metric_rows_are_written_once_per_trial_and_epoch(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    rows = [{"epoch": 1, "val_acc": 0.5, "pi": -3.0}, {"epoch": 2, "val_acc": 0.6, "pi": -4.0}]
    steps = {1: [{"epoch": 1, "step": 5, "pi": -2.0}, {"epoch": 1, "step": 10, "pi": -2.5}]}
    store.write_metrics(1, 7, rows, steps)
    store.write_metrics(1, 7, rows[1:], {})  # a replayed epoch is not stored twice
    frame = store.epochs_frame(1)
    assert frame[["trial_id", "epoch", "val_acc"]].values.tolist() == [[7, 1, 0.5], [7, 2, 0.6]]
    assert store.steps_frame(1)["step"].tolist() == [5, 10]
    assert store.epoch_counts(1) == {7: 2}
    assert store.epochs_frame(2).empty


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
