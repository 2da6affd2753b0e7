"""TensorBoard runs from ``export``, ``train`` and the study commands, read back with
TensorBoard's own reader: every scalar against the stored metric row of its epoch, and the
hparams plugin's summaries decoded.

TensorBoard keeps scalars as 32-bit floats, so a scalar equals its stored value rounded to
float32, exactly.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from bopsweep.files import temp_folder
from bopsweep.readers.plots import LAYERS
from bopsweep.readers.tensorboard import StudyBoard, TrialRun
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.studies import TrialConfig
from bopsweep.trial.run_dir import read_rows
from tests.helpers import TINY, invoke, one_line_error

HPARAM_NAMES = {
    "variant", "gamma", "sigma", "tau", "eps", "lr", "weight_decay", "two_step", "epochs",
    "batch_size", "width", "norm", "init", "subset", "val_subset", "augment", "compile", "seed",
    "log_every", "gamma_schedule", "sigma_schedule", "tau_schedule", "lr_schedule",
}  # fmt: skip
METRICS = {"accuracy/val", "accuracy/val_best"}


# --- reading a run back -----------------------------------------------------------------------
def read_run(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, Any]]:
    """(tag → [(step, value)], hparams plugin tag → decoded HParamsPluginData) of one run."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    hparams = {
        tag: HParamsPluginData.FromString(content)
        for tag, content in acc.PluginTagToContent("hparams").items()
    }
    return scalars, hparams


def f32(value: float) -> float:
    return float(np.float32(value))


def expected_scalars(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """The scalars a run must hold for these metric rows (epoch = step), as float32."""
    names = {
        "accuracy/train": "train_acc",
        "accuracy/val": "val_acc",
        "loss/train": "train_loss",
        "loss/val": "val_loss",
        "pi/network": "pi",
        "c2i/network": "c2i",
        **{f"pi/{layer}": f"pi_{layer}" for layer in LAYERS},
        **{f"c2i/{layer}": f"c2i_{layer}" for layer in LAYERS},
        **{f"hyperparameters/{h}": h for h in ("gamma", "sigma", "tau", "lr")},
    }
    out: dict[str, list[tuple[int, float]]] = {}
    for tag, key in names.items():
        points = [(r["epoch"], f32(r[key])) for r in rows if r.get(key) is not None]
        if points:
            out[tag] = points
    best = np.maximum.accumulate([r["val_acc"] for r in rows])
    out["accuracy/val_best"] = [(r["epoch"], f32(b)) for r, b in zip(rows, best)]
    return out


def session_hparams(plugin: dict[str, Any]) -> dict[str, Any]:
    start = plugin["_hparams_/session_start_info"].session_start_info
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}


def assert_hparams_plugin(plugin: dict[str, Any], status: str | None) -> None:
    """The experiment names every hyperparameter and the two metrics; the session start holds
    values of those names; the session end (if any) the status."""
    experiment = plugin["_hparams_/experiment"].experiment
    assert {h.name for h in experiment.hparam_infos} == HPARAM_NAMES
    assert {m.name.tag for m in experiment.metric_infos} == METRICS
    assert set(session_hparams(plugin)) <= HPARAM_NAMES
    if status is None:
        assert "_hparams_/session_end_info" not in plugin
    else:
        end = plugin["_hparams_/session_end_info"].session_end_info
        assert api_pb2.Status.Name(end.status) == status


# --- export (of conftest's study_db) -----------------------------------------------------------
def test_export_writes_each_trial_as_a_run_with_its_stored_metrics_and_hparams(study_db):
    folder, url, written = study_db
    db = folder / "study.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    logdir = folder / "tb"
    result = invoke(["export", str(db), "--tensorboard", str(logdir)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 TensorBoard runs" in result.output
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # read-only on the database
    assert not (folder / "trials.csv").exists()  # --tensorboard writes no table
    runs = sorted(p.name for p in (logdir / "abl").iterdir())
    names = {t["number"]: t["label"] for t in written}
    assert runs == sorted(f"{n}-{label}" for n, label in names.items())
    assert all("/" not in label and " " not in label for label in runs)
    states = {
        t.number: t.state.name
        for t in optuna.load_study(study_name="abl", storage=url).get_trials(deepcopy=False)
    }
    status = {"COMPLETE": "STATUS_SUCCESS", "FAIL": "STATUS_FAILURE", "PRUNED": "STATUS_UNKNOWN"}
    for trial in written:
        scalars, plugin = read_run(logdir / "abl" / f"{trial['number']}-{trial['label']}")
        assert scalars == expected_scalars(trial["rows"])
        assert not any(tag.startswith("c2i/") for tag in scalars)  # these rows have no C2I
        assert_hparams_plugin(plugin, status[states[trial["number"]]])
        hp = session_hparams(plugin)
        assert hp["tau"] == trial["params"]["tau"] and hp["variant"] == "bop2-unbiased"
        assert (hp["gamma"], hp["sigma"], hp["epochs"], hp["augment"]) == (1e-7, 1e-3, 3, True)
        assert hp["tau_schedule"] == "constant"


def test_export_again_is_refused_without_force_and_replaces_the_study_whole_with_it(study_db):
    folder, _, written = study_db
    db, logdir = folder / "study.db", folder / "tb"
    assert invoke(["export", str(db), "--tensorboard", str(logdir)]).exit_code == 0
    stray = logdir / "abl" / "stray"
    stray.mkdir()  # a folder only the first export has: gone once replaced
    one_line_error(
        invoke(["export", str(db), "--tensorboard", str(logdir)]),
        "pass --force to replace it",
    )
    assert stray.exists()
    result = invoke(["export", str(db), "--tensorboard", str(logdir), "--force"])
    assert result.exit_code == 0, result.output
    assert not stray.exists()
    assert [p.name for p in logdir.iterdir()] == ["abl"]  # no temporary folder left
    for trial in written:
        run = logdir / "abl" / f"{trial['number']}-{trial['label']}"
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        scalars, _ = read_run(run)
        assert scalars == expected_scalars(trial["rows"])  # each step once


# the real export command, made to stop after its first run so that a test can kill it there
SLOW_EXPORT = """
import sys, time
from bopsweep.readers import tensorboard
from bopsweep.cli import app

end = tensorboard.TrialRun.end


def end_then_wait(self, *args):
    end(self, *args)
    print("one run written", flush=True)
    time.sleep(120)


tensorboard.TrialRun.end = end_then_wait
app(sys.argv[1:], prog_name="bopsweep")
"""


def export_stopped_after_one_run(db: Path, logdir: Path) -> subprocess.Popen:
    export = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, "export", str(db), "--tensorboard", str(logdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert export.stdout is not None
    assert export.stdout.readline() == "one run written\n", export.communicate(timeout=60)
    assert [p.name.startswith(".abl.tmp-") for p in logdir.iterdir()] == [True]
    return export


def tensorboard_runs(logdir: Path) -> list[str]:
    """The runs TensorBoard itself lists for ``--logdir`` (it walks hidden folders too)."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    return sorted(multiplexer.Runs())


def test_an_export_killed_outright_leaves_nothing_tensorboard_lists_once_the_next_one_runs(
    study_db,
):
    folder, _, written = study_db
    db, logdir = folder / "study.db", folder / "tb"
    export = export_stopped_after_one_run(db, logdir)
    export.kill()
    export.communicate(timeout=60)
    assert not (logdir / "abl").exists()
    ours = [p.name for p in logdir.iterdir()]  # a kill -9 cannot clean up: the next export does
    result = invoke(["export", str(db), "--tensorboard", str(logdir)])
    assert result.exit_code == 0, result.output
    expected = sorted(f"abl/{t['number']}-{t['label']}" for t in written)
    assert tensorboard_runs(logdir) == expected  # each trial once, not its half copy as well
    assert [p.name for p in logdir.iterdir()] == ["abl"], ours


def test_an_export_stopped_by_sigterm_removes_its_temporary_folder_as_ctrl_c_does(study_db):
    folder, _, _ = study_db
    db, logdir = folder / "study.db", folder / "tb"
    export = export_stopped_after_one_run(db, logdir)
    export.send_signal(signal.SIGTERM)
    _, err = export.communicate(timeout=60)
    assert export.returncode != 0
    assert "Traceback" not in err
    assert list(logdir.iterdir()) == []


def test_an_export_removes_only_the_temporary_folders_of_killed_exports_of_its_study(study_db):
    folder, _, _ = study_db
    db, logdir = folder / "study.db", folder / "tb"
    logdir.mkdir()
    users = [".abl.tmp-mine", ".abl.backup", ".abl.tmp-0123456789abc", ".other.tmp-0123456789ab"]
    for name in users:
        (logdir / name).mkdir()
    killed = logdir / ".abl.old-0123456789ab"  # a replacing export killed between its renames
    (killed / "abl" / "0-old").mkdir(parents=True)
    with temp_folder(logdir, "abl") as live:  # another export, still writing
        result = invoke(["export", str(db), "--tensorboard", str(logdir)])
        assert result.exit_code == 0, result.output
        assert live.is_dir()
    assert not killed.exists()
    assert sorted(p.name for p in logdir.iterdir()) == sorted([*users, live.name, "abl"])


# --- bad input ---------------------------------------------------------------------------------
def test_a_tensorboard_dir_that_is_a_file_is_refused_by_every_command_creating_nothing(
    small_cifar_dir, study_db
):
    folder, _, _ = study_db
    file = folder / "afile"
    file.write_text("x")
    data = ["--data-dir", str(small_cifar_dir), *TINY]
    storage = ["--storage", f"sqlite:///{folder / 'new.db'}"]
    for args, fragment in (
        (["export", str(folder / "study.db"), "--tensorboard", str(file)], "is a file"),
        (["export", str(folder / "study.db"), "--tensorboard", str(file / "x")], "not a folder"),
        (["train", "--out", str(folder / "run"), "--tensorboard", str(file), *data], "is a file"),
        (["grid", "--param", "tau", *storage, "--tensorboard", str(file), *data], "is a file"),
        (["resume", str(folder / "study.db"), "--tensorboard", str(file / "x")], "not a folder"),
    ):
        one_line_error(invoke(args), fragment)
    assert sorted(p.name for p in folder.iterdir()) == ["afile", "study.db"]


def test_train_refuses_a_new_run_where_the_tensorboard_run_holds_another(small_cifar_dir, tmp_path):
    data = ["--data-dir", str(small_cifar_dir), "--epochs", "1", *TINY]
    first = ["train", "--out", str(tmp_path / "a" / "run"), "--tensorboard", str(tmp_path / "tb")]
    assert invoke([*first, *data]).exit_code == 0
    other = ["train", "--out", str(tmp_path / "b" / "run"), "--tensorboard", str(tmp_path / "tb")]
    one_line_error(invoke([*other, *data]), "already holds a TensorBoard run")
    assert not (tmp_path / "b").exists()


# --- train ---------------------------------------------------------------------------------------
def test_train_writes_its_epochs_live_as_a_run_named_after_its_folder(small_cifar_dir, tmp_path):
    out, logdir = tmp_path / "quick", tmp_path / "tb"
    args = ["train", "--data-dir", str(small_cifar_dir), "--epochs", "2", "--out", str(out)]
    result = invoke([*args, "--tensorboard", str(logdir), "--sigma", "1e-2", *TINY])
    assert result.exit_code == 0, result.output
    rows = read_rows(out / "metrics.csv")
    scalars, plugin = read_run(logdir / "quick")
    assert scalars == expected_scalars(rows)
    assert {"c2i/network", "c2i/fc3", "pi/conv1", "hyperparameters/lr"} <= set(scalars)
    assert_hparams_plugin(plugin, "STATUS_SUCCESS")
    config = json.loads((out / "config.json").read_text())
    hp = session_hparams(plugin)
    assert hp["sigma"] == 1e-2 == config["sigma"] and hp["variant"] == "bop2-biased"
    assert "device" not in hp and "data_dir" not in hp


@pytest.mark.slow
def test_train_resume_continues_its_run_without_writing_an_epoch_twice(small_cifar_dir, tmp_path):
    out, logdir = tmp_path / "quick", tmp_path / "tb"
    data = ["--data-dir", str(small_cifar_dir), *TINY]
    # epoch 1 without TensorBoard; epoch 2 on resume with it (epoch 1 written from
    # metrics.csv); epoch 3 on a second resume, continuing the run
    result = invoke(["train", "--epochs", "1", "--out", str(out), *data])
    assert result.exit_code == 0, result.output
    for epochs in ("2", "3"):
        resume = ["train", "--resume", str(out), "--epochs", epochs, "--quiet"]
        result = invoke([*resume, "--tensorboard", str(logdir)])
        assert result.exit_code == 0, result.output
    rows = read_rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    scalars, plugin = read_run(logdir / "quick")
    assert scalars == expected_scalars(rows)  # steps 1, 2, 3, each once
    assert len(list((logdir / "quick").glob("events.out.tfevents.*"))) == 2
    assert_hparams_plugin(plugin, "STATUS_SUCCESS")


def test_a_run_that_cannot_be_written_is_said_once_and_the_training_goes_on(
    small_cifar_dir, tmp_path
):
    logdir = tmp_path / "tb"
    logdir.mkdir()
    (logdir / "quick").write_text("not a folder")  # the run's folder cannot be made
    args = ["train", "--data-dir", str(small_cifar_dir), "--epochs", "2"]
    result = invoke([*args, "--out", str(tmp_path / "quick"), "--tensorboard", str(logdir), *TINY])
    assert result.exit_code == 0, result.output
    assert result.output.count("cannot write TensorBoard files") == 1
    assert len(read_rows(tmp_path / "quick" / "metrics.csv")) == 2


# --- studies -------------------------------------------------------------------------------------
def test_the_study_sink_writes_rows_handed_again_once_and_ends_with_the_trial_state(tmp_path):
    """The recorder hands a trial's rows again when a database write failed: each epoch is
    written once; the run's status is the trial's state."""
    notes: list[str] = []
    board = StudyBoard(tmp_path / "tb" / "s", notes.append)
    config = TrialConfig(optimizer="bop", gamma=1e-4, tau=1e-8).to_dict()
    rows = [
        {"epoch": e, "train_acc": 0.1 * e, "val_acc": 0.3 - 0.1 * e, "pi": -e, "sigma": None}
        for e in (1, 2)
    ]
    board.epochs(7, 3, "τ=1e-08 [a/b]", "abc", config, rows[:1])
    board.epochs(7, 3, "τ=1e-08 [a/b]", "abc", config, rows)  # epoch 1 again
    board.end(7, "FAIL")
    scalars, plugin = read_run(tmp_path / "tb" / "s" / "3-τ=1e-08_a_b")
    assert scalars["accuracy/val"] == [(1, f32(0.2)), (2, f32(0.1))]
    assert scalars["accuracy/val_best"] == [(1, f32(0.2)), (2, f32(0.2))]
    assert "hyperparameters/sigma" not in scalars  # not used by Bop
    assert_hparams_plugin(plugin, "STATUS_FAILURE")
    hp = session_hparams(plugin)
    assert hp["variant"] == "bop" and "sigma" not in hp and hp["gamma"] == 1e-4
    assert notes == []


def test_a_resumed_run_purges_epochs_past_its_checkpoint_and_writes_them_anew(tmp_path):
    """A run that holds epochs past the checkpoint the training resumes from (written by a run
    that went further): readers drop them from the restart on, and each epoch reads once."""
    rows = [{"epoch": e, "val_acc": 0.1 * e} for e in (1, 2, 3)]
    run = TrialRun(tmp_path / "x", {"seed": 0})
    run.epochs(rows)
    run.close()
    again = TrialRun(tmp_path / "x", {"seed": 0})
    again.resume(2)
    again.epochs([*rows[:2], {"epoch": 3, "val_acc": 0.05}])
    again.close()
    scalars, _ = read_run(tmp_path / "x")
    assert scalars["accuracy/val"] == [(1, f32(0.1)), (2, f32(0.2)), (3, f32(0.05))]
    assert scalars["accuracy/val_best"] == [(1, f32(0.1)), (2, f32(0.2)), (3, f32(0.2))]


@pytest.mark.slow
def test_a_study_resumed_with_tensorboard_writes_a_run_per_trial_from_the_driver(
    small_cifar_dir, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    grid = ["grid", "--param", "gamma", "--values", "1e-7,1e-6", "--epochs", "2", "--seeds", "1"]
    data = ["--data-dir", str(small_cifar_dir), "--storage", storage, *TINY]
    result = invoke([*grid, *data, "--queue-only"])
    assert result.exit_code == 0, result.output
    logdir = tmp_path / "tb"
    result = invoke(
        ["resume", "--storage", storage, "--workers", "2", "--tensorboard", str(logdir)]
    )
    assert result.exit_code == 0, result.output
    store = Store.open_readonly(storage)
    study = store.load("grid-gamma")
    stored = store.metrics.epoch_rows(study)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2
    runs = sorted(p.name for p in (logdir / "grid-gamma").iterdir())
    assert runs == sorted(f"{t.number}-{t.user_attrs['label']}" for t in trials)
    for t in trials:
        scalars, plugin = read_run(logdir / "grid-gamma" / f"{t.number}-{t.user_attrs['label']}")
        rows = stored[trial_id(t)]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert scalars == expected_scalars(rows)
        assert_hparams_plugin(plugin, "STATUS_SUCCESS")
        assert session_hparams(plugin)["gamma"] == t.params["gamma"]


@pytest.mark.slow
def test_a_study_whose_runs_cannot_be_written_says_so_once_and_completes(small_cifar_dir, tmp_path):
    logdir = tmp_path / "tb"
    logdir.mkdir()
    (logdir / "grid-gamma").write_text("in the way")  # the study's folder cannot be made
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = invoke(
        ["grid", "--param", "gamma", "--values", "1e-7,1e-6", "--epochs", "1", "--workers", "2",
         "--data-dir", str(small_cifar_dir), "--storage", storage, "--tensorboard", str(logdir),
         *TINY],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("cannot write TensorBoard files") == 1
    trials = optuna.load_study(study_name="grid-gamma", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
