"""Figures from real (tiny) studies: each test checks the data drawn against the database."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from bopsweep.cli import app
from bopsweep.config import TrialConfig
from bopsweep.dispatch import DispatchOptions, run_study
from bopsweep.plots import (
    ablation_figure,
    comparison_figure,
    load_study_data,
    optuna_figures,
    pi_figure,
    schedule_figure,
    summary_figure,
)
from bopsweep.report import metrics_frame
from bopsweep.search import SearchSpace
from bopsweep.store import Store
from bopsweep.studies import grid_study, optuna_study, schedule_study
from tests.helpers import one_line_error

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def db(small_cifar_dir, tmp_path_factory):
    """One database holding a grid (2 values × 2 seeds), a schedule, and an Optuna study."""
    folder = tmp_path_factory.mktemp("plots")
    url = f"sqlite:///{folder / 'study.db'}"
    base = TrialConfig(
        width=1 / 16,
        batch_size=20,
        epochs=3,
        device="cpu",
        unbiased=True,
        gamma=1e-7,
        sigma=1e-3,
        tau=1e-6,
        data_dir=str(small_cifar_dir),
    )
    specs = [
        grid_study("abl", base, {"tau": [1e-6, 1e-4]}, seeds=2),
        schedule_study("sch", base, "tau", "exponential", every=1, variants=["unbiased"]),
        optuna_study("opt", base, SearchSpace(), trials=3, sampler_seed=0),
    ]
    for spec in specs:
        code = run_study(
            spec,
            DispatchOptions(storage=url, device="cpu", workers=2, quiet=True),
            echo=lambda *_: None,
        )
        assert code == 0
    return folder, url


def study_data(url, name):
    store = Store(url)
    study = store.load(name)
    return load_study_data(store, study), metrics_frame(store, study), store, study


def lines_by_label(ax):
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_ablation_figure_draws_the_mean_over_seeds_of_each_value(db):
    _, url = db
    data, frame, store, study = study_data(url, "abl")
    fig = ablation_figure(data, "tau")
    top, bottom = fig.axes[0], fig.axes[1]
    drawn = lines_by_label(top)
    assert set(drawn) == {"τ = 1e-06", "τ = 1e-04"}
    for tau, label in ((1e-6, "τ = 1e-06"), (1e-4, "τ = 1e-04")):
        rows = frame[frame["param_tau"] == tau]
        assert rows["number"].nunique() == 2  # two seeds
        expected = rows.groupby("epoch")["val_acc"].mean() * 100
        x, y = drawn[label].get_data()
        assert list(x) == list(expected.index) and np.allclose(y, expected.values)
    assert len(top.collections) >= 2  # min–max bands over the seeds
    steps = metrics_frame(store, study, steps=True)
    pi = lines_by_label(bottom)["τ = 1e-04"]
    expected = steps[steps["param_tau"] == 1e-4].groupby("step")["pi"].mean()
    assert np.allclose(pi.get_ydata(), expected.values)
    assert "mean of 2 seeds" in top.get_title()


def test_summary_figure_draws_final_and_best_accuracy_on_a_log_axis(db):
    _, url = db
    data, frame, *_ = study_data(url, "abl")
    fig = summary_figure(data, "tau")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    drawn = {c.get_label(): c.lines[0] for c in ax.containers}  # error-bar plots
    final = drawn["Bop2ndOrder unbiased, final"]
    last = frame.sort_values("epoch").groupby("number").tail(1)
    expected = last.groupby("param_tau")["val_acc"].mean() * 100
    assert np.allclose(final.get_xdata(), expected.index) and np.allclose(
        final.get_ydata(), expected
    )
    best = drawn["Bop2ndOrder unbiased, best"]
    expected_best = frame.groupby("number").agg(tau=("param_tau", "first"), best=("val_acc", "max"))
    assert np.allclose(best.get_ydata(), expected_best.groupby("tau")["best"].mean() * 100)


def test_schedule_figure_draws_each_arm_and_the_scheduled_value(db):
    _, url = db
    data, frame, *_ = study_data(url, "sch")
    fig = schedule_figure(data)
    top, bottom = fig.axes[0], fig.axes[1]
    assert set(lines_by_label(top)) == {
        "unbiased constant",
        "unbiased increasing",
        "unbiased decreasing",
    }
    values = {label: line.get_ydata() for label, line in lines_by_label(bottom).items()}
    assert np.allclose(values["unbiased constant"], [1e-6] * 3)
    assert np.allclose(values["unbiased increasing"], [1e-6, 1e-5, 1e-4])  # ×10 every epoch
    assert np.allclose(values["unbiased decreasing"], [1e-6, 1e-7, 1e-8])
    for label, line in lines_by_label(top).items():
        rows = frame[frame["label"] == label].sort_values("epoch")
        assert np.allclose(line.get_ydata(), rows["val_acc"] * 100)


def test_comparison_figure_draws_training_and_validation_per_arm(db):
    _, url = db
    data, frame, *_ = study_data(url, "sch")
    ax = comparison_figure(data).axes[0]
    solid = lines_by_label(ax)
    assert len(solid) == 3
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 3
    rows = frame[frame["label"] == "unbiased increasing"].sort_values("epoch")
    assert np.allclose(solid["unbiased increasing"].get_ydata(), rows["val_acc"] * 100)
    assert any(np.allclose(line.get_ydata(), rows["train_acc"] * 100) for line in dashed)


def test_pi_figure_network_and_last_layer(db):
    _, url = db
    data, _, store, study = study_data(url, "sch")
    fig = pi_figure(data, ["fc3"])
    network, last = fig.axes[0], fig.axes[1]
    steps = metrics_frame(store, study, steps=True)
    rows = steps[steps["label"] == "unbiased constant"].sort_values("step")
    assert np.allclose(lines_by_label(network)["unbiased constant"].get_ydata(), rows["pi"])
    assert any(np.allclose(line.get_ydata(), rows["pi_fc3"]) for line in last.get_lines())
    assert "layer fc3" in last.get_title()


def test_optuna_figures_draw_the_study_history(db):
    _, url = db
    data, *_ = study_data(url, "opt")
    figures = optuna_figures(data)
    assert {"optuna_history", "optuna_parallel"} <= set(figures)
    history = figures["optuna_history"].axes[0]
    values = sorted(t.value for t in data.study.trials if t.value is not None)
    drawn = sorted(
        np.concatenate([c.get_offsets()[:, 1] for c in history.collections if len(c.get_offsets())])
    )
    assert np.allclose(sorted(set(drawn)), sorted(set(values)))


def test_plot_command_writes_every_figure_and_an_index(db, tmp_path):
    folder, _ = db
    out = tmp_path / "figs"
    result = runner.invoke(
        app, ["plot", str(folder / "study.db"), "--out", str(out), "--layer", "last"]
    )
    assert result.exit_code == 0, result.output
    expected = {
        "abl": {"ablation_tau.png", "summary_tau.png", "pi.png"},
        "sch": {"schedule.png", "comparison.png", "pi.png"},
        "opt": {"pi.png", "optuna_history.png", "optuna_parallel.png"},
    }
    index = (out / "index.md").read_text()
    for study, files in expected.items():
        present = {p.name for p in (out / study).iterdir()}
        assert files <= present, (study, present)
        for f in present:
            assert f"({study}/{f})" in index
    svg = runner.invoke(
        app,
        [
            "plot",
            str(folder / "study.db"),
            "--study",
            "abl",
            "--out",
            str(tmp_path / "svg"),
            "--format",
            "svg",
            "--param",
            "tau",
        ],
    )
    assert svg.exit_code == 0 and (tmp_path / "svg" / "abl" / "ablation_tau.svg").exists()


def test_plot_bad_input_gets_one_line_and_exit_2(db, tmp_path):
    folder, _ = db
    empty = tmp_path / "empty.db"
    import optuna

    optuna.create_study(storage=f"sqlite:///{empty}", study_name="not-bopsweep")
    (tmp_path / "file").write_text("x")
    cases = [
        (["plot", str(tmp_path / "absent.db")], "no such database"),
        (["plot", str(empty)], "holds no bopsweep study"),
        (
            ["plot", str(folder / "study.db"), "--study", "abl", "--param", "gamma"],
            "--param 'gamma' is not swept in study abl",
        ),
        (
            ["plot", str(folder / "study.db"), "--out", str(tmp_path / "file" / "sub")],
            "cannot write to",
        ),
        (["plot", str(folder / "study.db"), "--format", "jpg"], "--format must be one of"),
        (["plot", str(folder / "study.db"), "--layer", "conv9"], "unknown layer 'conv9'"),
    ]
    for args, fragment in cases:
        one_line_error(runner.invoke(app, args), fragment)
    with sqlite3.connect(folder / "study.db") as conn:  # nothing was written to the database
        assert conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == 3
