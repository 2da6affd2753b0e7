"""The columns a figure draws, picked out of the stored rows by the database (SQLite's JSON
functions, PostgreSQL's jsonb): the same frame as the rows decoded in Python, every digit kept,
only rows of the study's trials as they are now; and decoded in Python where the database
cannot (a stored NaN, a value that is not a number)."""

from __future__ import annotations

import json
import sqlite3

import optuna
import pandas as pd
import pytest

from bopsweep.store import Store
from bopsweep.store.metric_columns import projected, select_frame
from bopsweep.store.optuna_adapter import study_id, trial_id

EPOCH_COLUMNS = ["val_acc", "c2i", "tau", "missing"]
STEP_COLUMNS = ["pi", "pi_fc3", "missing"]


def running_trial(study: optuna.Study) -> int:
    return trial_id(study.ask())


def write_study(store: Store) -> optuna.Study:
    """Three trials: rows with and without C2I, a null, values whose last digit matters, and
    bundles of steps under two different headers (a trial resumed by a later version)."""
    study = optuna.create_study(study_name="s", storage=store.storage)
    sid = study_id(study)
    a, b, c = (running_trial(study) for _ in range(3))
    store.metrics.write(
        sid,
        a,
        [
            {"epoch": 1, "val_acc": 0.1 + 0.2, "c2i": 1e-300, "tau": None},
            {"epoch": 2, "val_acc": 123456789.12345679, "c2i": 0.5, "tau": 1e-6},
        ],
        {
            1: [{"epoch": 1, "step": 5, "pi": -2.0000000000000004, "pi_fc3": -1.0}],
            2: [
                {"epoch": 2, "step": 10, "steps": 5, "pi_fc3": -8.5, "pi": -3.25},
                {"epoch": 2, "step": 15, "steps": 5, "pi_fc3": -8.75, "pi": -3.5},
            ],
        },
    )
    store.metrics.write(sid, b, [{"epoch": 1, "val_acc": 0.75, "tau": 2e-7}], {})
    store.metrics.write(sid, c, [], {3: [{"epoch": 3, "step": 30, "pi": -9.0}]})
    return study


def both_ways(store: Store, study: optuna.Study, legacy: bool = False) -> None:
    """The database's frame is the one of the rows decoded in Python."""
    m = store.metrics
    for table, columns, steps in ((m.epochs, EPOCH_COLUMNS, False), (m.steps, STEP_COLUMNS, True)):
        by_db = select_frame(m.engine, table.name, study_id(study), columns, legacy, steps)
        decoded = (m.steps_frame if steps else m.epochs_frame)(study)
        assert by_db is not None, "the database did not pick the columns out"
        pd.testing.assert_frame_equal(by_db, projected(decoded, columns, steps), check_exact=True)


def test_the_database_picks_out_the_columns_python_decodes_every_digit_kept(storage):
    store = Store(storage, create=True)
    study = write_study(store)
    both_ways(store, study)
    epochs = store.metrics.epochs_frame(study, columns=EPOCH_COLUMNS)
    assert list(epochs.columns) == ["trial_id", "epoch", "val_acc", "c2i", "tau"]  # no "missing"
    assert epochs["val_acc"].tolist() == [0.1 + 0.2, 123456789.12345679, 0.75]
    assert epochs["c2i"].tolist()[:2] == [1e-300, 0.5] and epochs["c2i"].isna().tolist()[2]
    assert epochs["tau"].isna().tolist() == [True, False, False]  # a null is missing
    steps = store.metrics.steps_frame(study, columns=STEP_COLUMNS)
    assert steps["step"].tolist() == [5, 10, 15, 30]
    assert steps["pi"].tolist() == [-2.0000000000000004, -3.25, -3.5, -9.0]  # either header
    assert steps["pi_fc3"].tolist()[:3] == [-1.0, -8.5, -8.75]


def test_one_column_alone_keeps_every_digit_and_a_column_asked_twice_comes_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    exact = 0.12345678901234568  # its 17th digit is what SQLite prints of one value (15) loses
    rows = [{"epoch": 1, "val_acc": exact}]
    store.metrics.write(
        study_id(study), running_trial(study), rows, {1: [{"step": 5, "pi": exact}]}
    )
    m = store.metrics
    for table, steps in ((m.epochs, False), (m.steps, True)):
        column = "pi" if steps else "val_acc"
        frame = select_frame(m.engine, table.name, study_id(study), [column, column], False, steps)
        assert frame is not None and list(frame.columns)[-1:] == [column]
        assert frame[column].tolist() == [exact]


@pytest.mark.parametrize(
    ("stored", "name"),
    [([1, 2, 3, 4, 5], "a"), ({"x": 1}, "a"), (0.5, "π_t"), (0.5, 'a"b'), (0.5, "a\\b")],
    ids=["a list", "an object", "a name not ASCII", "a name with a quote", "with a backslash"],
)
def test_what_a_json_path_cannot_pick_out_as_written_is_decoded_in_python(tmp_path, stored, name):
    """A list among the values would add numbers to a row; SQLite compares a path with the key
    as json.dumps escaped it. Either way Python decodes, and the values are right."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    rows = [{"epoch": 1, name: stored, "b": 0.1}, {"epoch": 2, name: 0.5, "b": 0.2}]
    store.metrics.write(study_id(study), running_trial(study), rows, {})
    m = store.metrics
    assert (
        select_frame(m.engine, "bopsweep_epochs", study_id(study), [name, "b"], False, False)
        is None
    )
    frame = m.epochs_frame(study, columns=[name, "b"])
    assert frame["epoch"].tolist() == [1, 2] and frame["b"].tolist() == [0.1, 0.2]
    assert frame[name].tolist()[1] == 0.5


def test_rows_of_a_deleted_trial_are_not_picked_for_the_trial_that_reuses_its_id(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    old = optuna.create_study(study_name="old", storage=store.storage)
    store.metrics.write(study_id(old), running_trial(old), [{"epoch": 1, "val_acc": 0.1}], {})
    with store.engine.begin() as conn:  # deleted by another tool, its rows left behind
        conn.exec_driver_sql("DELETE FROM trials")
    new = optuna.create_study(study_name="new", storage=store.storage)
    reused = running_trial(new)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT trial_id FROM bopsweep_epochs").fetchone()[0] == reused
    assert store.metrics.epochs_frame(new, columns=["val_acc"]).empty
    store.metrics.write(study_id(new), reused, [{"epoch": 1, "val_acc": 0.9}], {})
    assert store.metrics.epochs_frame(new, columns=["val_acc"])["val_acc"].tolist() == [0.9]


def test_rows_of_bopsweep_0_1_without_their_trials_start_are_picked_read_only(tmp_path):
    path = tmp_path / "legacy.db"
    store = Store(f"sqlite:///{path}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    tid = running_trial(study)
    store.engine.dispose()
    with sqlite3.connect(path) as conn:  # the 0.1.0 schema: rows keyed on (trial_id, epoch)
        conn.execute(
            "CREATE TABLE bopsweep_epochs (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
            "trial_id INTEGER NOT NULL, epoch INTEGER NOT NULL, data TEXT NOT NULL)"
        )
        rows = [
            (study_id(study), tid, e, json.dumps({"epoch": e, "val_acc": e / 10})) for e in (2, 1)
        ]
        conn.executemany(
            "INSERT INTO bopsweep_epochs (study_id, trial_id, epoch, data) VALUES (?, ?, ?, ?)",
            rows,
        )
    readonly = Store.open_readonly(f"sqlite:///{path}")
    m = readonly.metrics
    frame = select_frame(m.engine, "bopsweep_epochs", study_id(study), ["val_acc"], True, False)
    assert frame is not None and frame["val_acc"].tolist() == [0.1, 0.2]
    assert readonly.metrics.epochs_frame(study, columns=["val_acc"]).equals(frame)


@pytest.mark.parametrize(
    ("stored", "read", "picked"),
    [(float("nan"), None, "maybe"), ("fast", None, "never"), (True, 1.0, "never")],
    ids=["NaN, which JSON does not allow", "a string", "a boolean"],
)
def test_what_the_database_cannot_pick_out_is_decoded_in_python(tmp_path, stored, read, picked):
    store = Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(study_name="s", storage=store.storage)
    rows = [{"epoch": 1, "val_acc": 0.5, "pi": stored}, {"epoch": 2, "val_acc": 0.6, "pi": -2.0}]
    store.metrics.write(study_id(study), running_trial(study), rows, {})
    m = store.metrics
    by_db = select_frame(m.engine, "bopsweep_epochs", study_id(study), ["pi"], False, False)
    if picked == "never":
        assert by_db is None
    elif by_db is not None:  # SQLite 3.42 and later read JSON5's NaN (as null): the same frame
        pd.testing.assert_frame_equal(by_db, projected(m.epochs_frame(study), ["pi"], False))
    frame = m.epochs_frame(study, columns=["val_acc", "pi"])
    assert frame["val_acc"].tolist() == [0.5, 0.6]
    first = frame["pi"].iloc[0]
    assert (pd.isna(first) if read is None else first == read) and frame["pi"].iloc[1] == -2.0
