"""A study's trial folders belong to its identity, never to a name, a path or a lock file.

Each study gets a UUID when it is made; its folders are ``ROOT/SLUG-UUID/CONFIG_ID/``, each
marked (``.bopsweep``) with whose it is and which data it trained on. A trial resumes only from
a folder marked as its own; ``delete`` removes only the folder marked as the deleted study's;
one driver per database is held on the database file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from bopsweep.errors import UserError
from bopsweep.folders import (
    MARKER,
    open_study_folder,
    read_marker,
    safe_component,
    trial_marker,
    write_marker,
)
from bopsweep.store import SPEC_ATTR, UUID_ATTR, Store, driver_lock, study_uuid
from bopsweep.studies import TrialConfig, grid_study
from bopsweep.trial.cifar_files import fingerprint, make_synthetic
from bopsweep.trial.run_dir import CHECKPOINT, METRICS, RunDir
from bopsweep.trial.train import run_trial
from tests.helpers import TINY, bopsweep, invoke, one_line_error, study_folder

GRID = ["grid", "--param", "tau", "--values", "1e-6", "--epochs", "1", *TINY]


def only_trial(db: Path, study: str) -> optuna.trial.FrozenTrial:
    (trial,) = optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials
    return trial


# --- identity ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_study_made_again_or_in_another_database_never_resumes_another_ones_folders(
    small_cifar_dir, tmp_path
):
    other = make_synthetic(tmp_path / "other", n_train=200, n_test=50, seed=7)
    first = bopsweep(*GRID, "--study", "s", "--data-dir", str(small_cifar_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = study_folder(tmp_path / "study.db", "s")
    delete = bopsweep("delete", "study.db", "--study", "s", "--yes", cwd=tmp_path)
    assert delete.returncode == 0, delete.stderr
    assert old.is_dir()  # kept: deleted without --checkpoints

    again = bopsweep(*GRID, "--study", "s", "--data-dir", str(other), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    new = study_folder(tmp_path / "study.db", "s")
    assert new != old  # a new identity: a new folder
    assert only_trial(tmp_path / "study.db", "s").user_attrs["resumed_from_epoch"] == 0
    (run,) = [d for d in new.iterdir() if d.is_dir()]
    assert read_marker(run)["data"] == fingerprint(other)

    # study.sqlite keeps its folders in study.ckpt/ too, apart from study.db's
    beside = bopsweep(
        *GRID, "--study", "s", "--storage", "sqlite:///study.sqlite",
        "--data-dir", str(small_cifar_dir), cwd=tmp_path,
    )  # fmt: skip
    assert beside.returncode == 0, beside.stderr
    assert only_trial(tmp_path / "study.sqlite", "s").user_attrs["resumed_from_epoch"] == 0
    assert study_folder(tmp_path / "study.sqlite", "s") not in (old, new)


def test_a_trial_folder_is_resumed_only_when_marked_with_its_own_study_and_data(tmp_path):
    run = RunDir(tmp_path / "c0")
    mine = trial_marker("a" * 32, "c0", "data-1")
    run.path.mkdir()
    (run.path / CHECKPOINT).write_bytes(b"a run of someone else")
    (run.path / METRICS).write_text("epoch,val_acc\n1,0.5\n")

    assert run.adopt(mine) is True  # unmarked: never resumed, its run removed
    assert not (run.path / CHECKPOINT).exists() and not (run.path / METRICS).exists()
    assert read_marker(run.path) == mine

    (run.path / CHECKPOINT).write_bytes(b"my own run")
    assert run.adopt(mine) is False  # marked as its own: kept, resumed
    assert (run.path / CHECKPOINT).read_bytes() == b"my own run"

    for other in (
        trial_marker("a" * 32, "c0", "data-2"),  # the same study on other data
        trial_marker("b" * 32, "c0", "data-1"),  # another study
    ):
        (run.path / CHECKPOINT).write_bytes(b"a run on other data")
        assert run.adopt(other) is True
        assert not (run.path / CHECKPOINT).exists()


def test_a_folder_a_live_trial_process_holds_is_left_to_it(tmp_path):
    import fcntl

    run = RunDir(tmp_path / "c0")
    run.path.mkdir()
    (run.path / CHECKPOINT).write_bytes(b"being written")
    with (run.path / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run.adopt(trial_marker("a" * 32, "c0", "d")) is False
    assert (run.path / CHECKPOINT).read_bytes() == b"being written"


def test_a_study_folder_marked_for_another_study_is_refused(tmp_path):
    folder = open_study_folder(tmp_path, "s", "a" * 32)
    write_marker(folder, "study", study_uuid="b" * 32, study="s")
    with pytest.raises(UserError, match="belongs to another study"):
        open_study_folder(tmp_path, "s", "a" * 32)


def test_a_study_of_bopsweep_0_1_keeps_its_folder_when_it_gets_its_identity(tmp_path):
    legacy = tmp_path / "grid-gamma" / "c0"
    legacy.mkdir(parents=True)
    (legacy / CHECKPOINT).write_bytes(b"interrupted at epoch 3")
    folder = open_study_folder(tmp_path, "grid-gamma", "a" * 32, legacy_data="d")
    assert not (tmp_path / "grid-gamma").exists()
    assert (folder / "c0" / CHECKPOINT).read_bytes() == b"interrupted at epoch 3"
    assert read_marker(folder / "c0") == trial_marker("a" * 32, "c0", "d")
    assert RunDir(folder / "c0").adopt(trial_marker("a" * 32, "c0", "d")) is False  # resumes


def test_names_become_one_harmless_path_component():
    for name in ("..", "../../x", "/abs", ".hidden", "a/b", "", "é" * 300):
        slug = safe_component(name)
        assert slug and "/" not in slug and not slug.startswith(".") and len(slug) <= 64


# --- names read from a database --------------------------------------------------------------
def test_delete_of_a_study_named_like_a_path_removes_no_folder_but_its_own(tmp_path):
    db = tmp_path / "study.db"
    store = Store(f"sqlite:///{db}", create=True)
    real, _ = store.create(grid_study("s", TrialConfig(), {"tau": [1e-6]}))
    identity = study_uuid(real)
    assert identity is not None
    folder = open_study_folder(tmp_path / "study.ckpt", "s", identity)
    (folder / "c0").mkdir()
    (folder / "c0" / CHECKPOINT).write_bytes(b"x")
    (tmp_path / "unrelated.txt").write_text("mine")
    for name in ("..", "../..", str(tmp_path)):  # another tool's studies, posing as bopsweep's
        impostor = optuna.create_study(study_name=name, storage=f"sqlite:///{db}")
        impostor.set_user_attr(SPEC_ATTR, real.user_attrs[SPEC_ATTR])
        impostor.set_user_attr(UUID_ATTR, identity)  # even its identity copied
        store.engine.dispose()
        result = invoke(["delete", str(db), "--study", name, "--checkpoints", "-y"])
        assert result.exit_code == 0, result.output
        assert "no trial folder there to delete" in result.output
    assert db.exists() and (tmp_path / "unrelated.txt").read_text() == "mine"
    assert (folder / "c0" / CHECKPOINT).exists()

    result = invoke(["delete", str(db), "--study", "s", "--checkpoints", "--yes"])
    assert result.exit_code == 0, result.output
    assert not folder.exists() and (tmp_path / "study.ckpt" / MARKER).exists()


# --- one driver per database -----------------------------------------------------------------
def test_one_driver_per_database_through_a_hard_link_and_without_a_lock_file(tmp_path):
    db = tmp_path / "study.db"
    Store(f"sqlite:///{db}", create=True)
    os.link(db, tmp_path / "alias.db")
    before = sorted(p.name for p in tmp_path.iterdir())
    with driver_lock(f"sqlite:///{db}"):
        with (
            pytest.raises(UserError, match="another bopsweep driver is running"),
            driver_lock(f"sqlite:///{tmp_path / 'alias.db'}"),
        ):
            pass
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing to replace
    with driver_lock(f"sqlite:///{tmp_path / 'alias.db'}"):  # released with the first
        pass


# --- a study that cannot run, and one that ends with work undone ------------------------------
def test_a_checkpoint_dir_that_cannot_be_made_is_one_line_and_creates_nothing(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = [*GRID, "--data-dir", str(small_cifar_dir), "--checkpoint-dir", "/proc/bopsweep"]
    one_line_error(invoke(args), "cannot keep trial folders in /proc/bopsweep")
    assert list(tmp_path.iterdir()) == []


def test_a_study_with_a_long_name_runs_to_the_end(small_cifar_dir, tmp_path):
    name = "s" * 300  # a folder name of 300 characters would be refused by the file system
    result = bopsweep(*GRID, "--study", name, "--data-dir", str(small_cifar_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert only_trial(tmp_path / "study.db", name).state.name == "COMPLETE"


def test_a_driver_whose_trial_cannot_start_retries_it_then_exits_non_zero(
    small_cifar_dir, tmp_path
):
    data = ["--data-dir", str(small_cifar_dir), "--max-retries", "1"]
    queued = bopsweep(*GRID, "--queue-only", *data, cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.load_study(study_name="grid-tau", storage=url)
    (trial,) = study.trials
    identity = study_uuid(study)
    assert identity is not None
    folder = open_study_folder(tmp_path / "study.ckpt", "grid-tau", identity)
    (folder / trial.user_attrs["config_id"]).write_text("a file where its folder goes")

    result = bopsweep("resume", "study.db", "--max-retries", "1", "--quiet", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # work undone: never a success
    assert "could not start: File exists" in result.stderr  # and says why
    tries = optuna.load_study(
        study_name="grid-tau", storage=f"sqlite:///{tmp_path / 'study.db'}"
    ).trials
    assert [t.state.name for t in tries] == ["FAIL", "FAIL"]  # retried once, then given up
    assert all("could not start" in t.user_attrs["fail_reason"] for t in tries)


# --- epochs never vanish -----------------------------------------------------------------------
def test_a_run_whose_metric_rows_were_damaged_trains_again_from_epoch_1(small_cifar_dir, tmp_path):
    config = TrialConfig(epochs=2, width=0.0625, batch_size=50, data_dir=str(small_cifar_dir))
    run_trial(config, tmp_path / "run")
    metrics = tmp_path / "run" / METRICS
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[1], "garbage", 1)  # epoch 1's row damaged
    metrics.write_text("\n".join(lines) + "\n")

    longer = TrialConfig.from_dict({**config.to_dict(), "epochs": 3})
    run_trial(longer, tmp_path / "run", resume=True)
    assert [row["epoch"] for row in RunDir(tmp_path / "run").history()] == [1, 2, 3]


def test_a_config_id_read_from_the_database_never_becomes_a_path(small_cifar_dir, tmp_path):
    data = ["--data-dir", str(small_cifar_dir)]
    assert bopsweep(*GRID, "--queue-only", *data, cwd=tmp_path).returncode == 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    (trial,) = storage.get_all_trials(storage.get_study_id_from_name("grid-tau"))
    storage.set_trial_user_attr(trial._trial_id, "config_id", "../../escape")  # another tool's
    storage.engine.dispose()

    result = bopsweep("resume", "study.db", "--max-retries", "0", "--quiet", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "is not a folder name bopsweep makes" in result.stderr
    assert not list(tmp_path.parent.rglob("escape"))


def test_a_study_of_bopsweep_0_1_queued_by_one_command_resumes_in_the_next(
    small_cifar_dir, tmp_path
):
    """The study gets its identity from the first command (here --queue-only, step 2 of
    'Several machines'); the next one that runs it still finds its interrupted trial."""
    import sqlite3

    from bopsweep.driver import DispatchOptions, run_study
    from bopsweep.driver.queue import TrialQueue
    from bopsweep.studies import expand

    url = f"sqlite:///{tmp_path / 'study.db'}"
    base = TrialConfig(epochs=2, width=0.0625, batch_size=20, data_dir=str(small_cifar_dir))
    spec = grid_study("old", base, {"tau": [1e-6]})
    (planned,) = expand(spec)
    study, _ = Store(url, create=True).create(spec)
    TrialQueue(study).enqueue_missing([planned])
    with sqlite3.connect(tmp_path / "study.db") as conn:  # as bopsweep 0.1 made it
        conn.execute("DELETE FROM study_user_attributes WHERE key = ?", (UUID_ATTR,))
    legacy = tmp_path / "study.ckpt" / "old" / planned.config_id  # interrupted after epoch 1
    run_trial(TrialConfig.from_dict({**planned.config.to_dict(), "epochs": 1}), legacy)

    options = DispatchOptions(storage=url, device="cpu", queue_only=True)
    assert run_study(spec, options, echo=lambda *_: None) == 0
    result = bopsweep("resume", "study.db", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trial = only_trial(tmp_path / "study.db", "old")
    assert trial.state.name == "COMPLETE" and trial.user_attrs["resumed_from_epoch"] == 1
    assert not (tmp_path / "study.ckpt" / "old").exists()  # moved under its identity
