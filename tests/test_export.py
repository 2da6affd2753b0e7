"""``bopsweep export``: the format from the file's suffix, every value written exactly, and
Optuna's column names with the values ``study.trials_dataframe()`` gives.

The study is a real SQLite study with trials in every state Optuna has, made through Optuna's
own ask and tell (so they carry real start and end times), and metric rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.studies import TrialConfig, grid_study
from tests.helpers import invoke, one_line_error

GAMMA = 7.246e-10
THIRD = 1 / 3
OPTUNA_SHARED = ["number", "value", "datetime_start", "datetime_complete", "duration"]
DISTRIBUTIONS = {
    "gamma": FloatDistribution(1e-10, 1e-5, log=True),
    "variant": CategoricalDistribution(("bop", "bop2-unbiased")),
}


def make_study(path: Path) -> optuna.Study:
    """Study ``g``: COMPLETE (value 1/3, γ 7.246e-10), PRUNED (Optuna keeps its last
    intermediate value), FAIL (NaN best accuracy), RUNNING, WAITING; one trial has a param
    the others lack; metric rows and logged steps for the complete one."""
    store = Store(f"sqlite:///{path}", create=True)
    study, _ = store.create(grid_study("g", TrialConfig(), {"gamma": [GAMMA, 1e-7]}))

    study.enqueue_trial({"gamma": GAMMA, "variant": "bop2-unbiased"})
    done = study.ask(DISTRIBUTIONS)
    done.set_user_attr("config_id", "c0")
    done.set_user_attr("best_val_acc", 0.9)
    done.set_user_attr("best_epoch", 2)
    done.set_user_attr("epochs_done", 2)
    rows = [{"epoch": e, "step": 10 * e, "val_acc": e / 3, "pi": -GAMMA} for e in (1, 2)]
    steps = {e: [{"epoch": e, "step": 10 * e - 5, "pi": -1 / 7}] for e in (1, 2)}
    store.metrics.write(study_id(study), trial_id(done), rows, steps)
    time.sleep(0.01)  # a duration that is not 0
    study.tell(done, THIRD)

    study.enqueue_trial({"gamma": 1e-7, "variant": "bop", "sigma": 0.25})
    pruned = study.ask(DISTRIBUTIONS | {"sigma": FloatDistribution(0.0, 1.0)})
    pruned.report(0.5, 1)
    pruned.report(2 / 3, 2)
    pruned.set_user_attr("pruned_at_epoch", 2)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)

    study.enqueue_trial({"gamma": 1e-6, "variant": "bop"})
    failed = study.ask(DISTRIBUTIONS)
    failed.set_user_attr("failure", "diverged")
    failed.set_user_attr("fail_reason", "NaN loss")
    failed.set_user_attr("best_val_acc", float("nan"))
    study.tell(failed, state=optuna.trial.TrialState.FAIL)

    study.enqueue_trial({"gamma": 1e-8, "variant": "bop"})
    running = study.ask(DISTRIBUTIONS)
    running.set_user_attr("slot", "cpu0")
    study.enqueue_trial({"gamma": 1e-9, "variant": "bop"})  # stays WAITING
    store.engine.dispose()
    return optuna.load_study(study_name="g", storage=f"sqlite:///{path}")


@pytest.fixture
def study(tmp_path, monkeypatch) -> optuna.Study:
    monkeypatch.chdir(tmp_path)
    return make_study(tmp_path / "study.db")


def export(*args: str) -> None:
    result = invoke(["export", "study.db", *args])
    assert result.exit_code == 0, result.output


def same(a: object, b: object) -> bool:
    """Equal, missing values (None, NaN, NaT) equal to each other."""
    if pd.isna(a) and pd.isna(b):  # type: ignore[arg-type]
        return True
    return a == b


def assert_matches_optuna(frame: pd.DataFrame, study: optuna.Study) -> None:
    """Optuna's columns hold what ``study.trials_dataframe()`` holds, value for value."""
    reference = study.trials_dataframe()
    params = sorted(c for c in reference if c.startswith("params_"))
    assert params == ["params_gamma", "params_sigma", "params_variant"]
    assert list(frame.columns[: 5 + len(params) + 1]) == [*OPTUNA_SHARED, *params, "state"]
    assert len(frame) == len(reference) == 5
    for column in ["number", "value", "state", *params]:
        for ours, theirs in zip(frame[column], reference[column]):
            assert same(ours, theirs), (column, ours, theirs)
    for column in ("datetime_start", "datetime_complete", "duration"):
        for ours, theirs in zip(frame[column], reference[column]):
            assert same(ours, theirs), (column, ours, theirs)
    assert frame["value"][1] == 2 / 3  # the pruned trial's value: Optuna's, its last epoch's


def read_csv(path) -> pd.DataFrame:
    """A CSV as pandas reads it back exactly: the file holds each float's shortest exact text,
    but pandas before 2.2 parses some of them one ulp off unless asked for round trips."""
    return pd.read_csv(path, float_precision="round_trip")


def test_csv_has_optuna_s_columns_and_values_and_reads_back_exactly(study, tmp_path):
    export("-o", "trials.csv")
    frame = read_csv(tmp_path / "trials.csv")
    for column in ("datetime_start", "datetime_complete"):
        frame[column] = pd.to_datetime(frame[column])
    frame["duration"] = pd.to_timedelta(frame["duration"])
    assert_matches_optuna(frame, study)
    assert frame["params_gamma"][0] == GAMMA and frame["value"][0] == THIRD  # exactly
    assert list(frame.columns[9:]) == ["label", "config_id", "epochs_done", "best_val_acc",
        "best_epoch", "step1_best_val_acc", "step1_best_epoch", "last_c2i", "failure",
        "fail_reason", "attempt", "slot", "pruned_at_epoch", "provenance_bopsweep",
        "provenance_commit", "provenance_dirty", "provenance_python", "provenance_torch",
        "provenance_cuda", "provenance_cudnn", "provenance_host", "provenance_gpu",
        "provenance_data"]  # fmt: skip
    text = (tmp_path / "trials.csv").read_text()
    first = text.splitlines()[1].split(",")
    start = dt.datetime.fromisoformat(first[2])  # ISO 8601, with its "T"
    assert "T" in first[2] and start == study.trials[0].datetime_start
    assert first[4].startswith("P0DT0H0M")  # ISO 8601 duration
    assert ",2,0.9,2," in text  # integers as integers, not 2.0


def test_json_reads_back_exactly_with_null_for_nan_and_iso_datetimes(study, tmp_path):
    export("-o", "trials.json")
    text = (tmp_path / "trials.json").read_text()
    assert ": NaN" not in text
    rows = json.loads(text)
    done, pruned, failed, running, waiting = rows
    assert done["params_gamma"] == GAMMA and done["value"] == THIRD  # not rounded
    assert failed["best_val_acc"] is None and failed["value"] is None  # NaN → null
    assert pruned["value"] == 2 / 3 and pruned["pruned_at_epoch"] == 2
    assert waiting["datetime_start"] is None and running["datetime_complete"] is None
    assert done["epochs_done"] == 2 and isinstance(done["epochs_done"], int)
    reference = study.trials_dataframe()
    for row, (_, ref) in zip(rows, reference.iterrows()):
        for column in ("datetime_start", "datetime_complete"):
            ours = row[column] and dt.datetime.fromisoformat(row[column])
            assert same(ours, ref[column]), column
        assert same(row["duration"] and pd.Timedelta(row["duration"]), ref["duration"])
    assert pd.Timedelta(done["duration"]) > pd.Timedelta(0)
    frame = pd.DataFrame(rows)
    for column in ("datetime_start", "datetime_complete"):
        frame[column] = pd.to_datetime(frame[column])
    frame["duration"] = pd.to_timedelta(frame["duration"])
    assert_matches_optuna(frame, study)


def test_parquet_keeps_types_and_values(study, tmp_path):
    pytest.importorskip("pyarrow")
    export("-o", "trials.parquet")
    assert (tmp_path / "trials.parquet").read_bytes()[:4] == b"PAR1"  # Parquet, not CSV
    frame = pd.read_parquet(tmp_path / "trials.parquet")
    assert pd.api.types.is_datetime64_any_dtype(frame["datetime_start"])
    assert pd.api.types.is_timedelta64_dtype(frame["duration"])
    assert_matches_optuna(frame, study)
    assert frame["params_gamma"][0] == GAMMA


def test_metrics_and_steps_use_number_and_params(study, tmp_path):
    export("--metrics", "-o", "m.json")
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [(r["number"], r["epoch"], r["params_gamma"]) for r in rows] == [
        (0, 1, GAMMA),
        (0, 2, GAMMA),
    ]
    assert rows[0]["val_acc"] == THIRD and rows[0]["pi"] == -GAMMA
    assert not [k for r in rows for k in r if k.startswith("param_")]
    export("--steps", "-o", "s.csv")
    steps = read_csv(tmp_path / "s.csv")
    assert list(steps["number"]) == [0, 0] and list(steps["params_gamma"]) == [GAMMA, GAMMA]
    assert list(steps["pi"]) == [-1 / 7, -1 / 7]


def test_the_suffix_is_the_format_and_a_contradiction_is_refused(study, tmp_path):
    export("-o", "upper.JSON")
    assert json.loads((tmp_path / "upper.JSON").read_text())[0]["number"] == 0
    export("-o", "listing.txt", "--format", "json")  # an unknown suffix, an explicit format
    assert json.loads((tmp_path / "listing.txt").read_text())[0]["params_gamma"] == GAMMA
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, fragment in (
        (["-o", "t.parquet", "--format", "csv"], "suffix .parquet but --format is csv"),
        (["-o", "t.csv", "--format", "json"], "suffix .csv but --format is json"),
        (["-o", "t.txt"], "cannot tell the format of t.txt"),
        (["-o", "trials"], "cannot tell the format of trials"),
        (["-o", "t.csv", "--format", "xlsx"], "xlsx"),
    ):
        one_line_error(invoke(["export", "study.db", *args]), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_parquet_without_pyarrow_is_one_line_and_writes_nothing(study, tmp_path):
    """A real process in which ``import pyarrow`` fails, as where it is not installed."""
    shadow = tmp_path / "no-pyarrow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(root)])}
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "bopsweep", "export", "study.db", "-o", "t.parquet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'bopsweep[parquet]'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file, no temporary file


def test_an_empty_study_exports_the_header(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    store.create(grid_study("g", TrialConfig(), {"gamma": [1e-7]}))
    store.engine.dispose()
    export("-o", "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == [*OPTUNA_SHARED, "state"] and "config_id" in header
    export("-o", "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == []


def test_iso_durations_read_back_to_the_nanosecond():
    from bopsweep.readers.export import iso_duration

    for value in (
        dt.timedelta(0),
        dt.timedelta(seconds=62, microseconds=500_000),
        dt.timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=7),
        -dt.timedelta(seconds=1, microseconds=1),
        pd.Timedelta(1, unit="ns"),
        pd.Timedelta(days=400, nanoseconds=123),
    ):
        text = iso_duration(value)
        assert pd.Timedelta(text) == pd.Timedelta(value), (value, text)
        assert text.lstrip("-").startswith("P") and math.isfinite(pd.Timedelta(text).value)
