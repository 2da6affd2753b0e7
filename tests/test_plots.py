"""Figures from tiny studies built directly in a SQLite database (no training, no driver): each
test checks the data drawn against the metric rows written to the database."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.image import imread

from bopsweep.defaults import optimizer_of, variant_name
from bopsweep.readers.plots import (
    ablation_figure,
    comparison_figure,
    load_study_data,
    optuna_figures,
    pi_figure,
    schedule_figure,
    summary_figure,
)
from bopsweep.readers.plots.style import param_label, pyplot
from bopsweep.store import Store
from bopsweep.studies import (
    TrialConfig,
    describe_config,
    expand,
    grid_study,
    optuna_study,
    schedule_study,
)
from bopsweep.studies.search import SearchSpace, suggest
from tests.helpers import EPOCHS, add_trial, invoke, one_line_error


@pytest.fixture(autouse=True)
def close_figures():
    """Every figure a test drew is closed after it (pyplot keeps them otherwise)."""
    yield
    pyplot().close("all")


@dataclass
class Database:
    folder: Any
    url: str
    # per study: one record per trial whose curve is drawn (number, label, params, rows, steps)
    written: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# an Optuna search's complete trials: variant, norm, γ, σ, τ (Bop has no σ); enough for importances
OPTUNA_TRIALS = (
    ("bop2-unbiased", "batch", 1e-8, 1e-3, 1e-6),
    ("bop2-biased", "layer", 1e-6, 1e-2, 1e-5),
    ("bop2-unbiased", "layer", 1e-5, 1e-4, 1e-7),
    ("bop", "batch", 1e-6, None, 1e-7),
    ("bop", "layer", 1e-9, None, 1e-8),
    ("bop2-biased", "batch", 1e-7, 1e-5, 1e-4),
)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One database holding a grid (2 values × 2 seeds), a schedule (one arm crashed once and
    retried), and an Optuna study (:data:`OPTUNA_TRIALS` and one that crashed before it was
    configured)."""
    folder = tmp_path_factory.mktemp("plots")
    url = f"sqlite:///{folder / 'study.db'}"
    base = TrialConfig(
        width=1 / 16,
        batch_size=20,
        epochs=EPOCHS,
        device="cpu",
        unbiased=True,
        gamma=1e-7,
        sigma=1e-3,
        tau=1e-6,
    )
    store = Store(url, create=True)
    rng = np.random.default_rng(0)
    database = Database(folder, url)
    for spec in (
        grid_study("abl", base, {"tau": [1e-6, 1e-4]}, seeds=2),
        schedule_study("sch", base, "tau", "exponential", every=1, variants=["unbiased"]),
    ):
        study, _ = store.create(spec)
        written = database.written[spec.name] = []
        for p in expand(spec):
            args = (store, study, p.config, p.label, p.params, p.distributions, rng)
            if p.label == "unbiased increasing":  # a crash after one epoch: drawn is the retry
                add_trial(*args, epochs=1, state=optuna.trial.TrialState.FAIL)
            written.append(add_trial(*args, attempt=int(p.label == "unbiased increasing")))
    space = SearchSpace()
    study, _ = store.create(optuna_study("opt", base, space, trials=3, sampler_seed=0))
    database.written["opt"] = []
    study.add_trial(  # failed before it was configured: no configuration, no curve
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            user_attrs={"failure": "error", "fail_reason": "sampler failed"},
        )
    )
    for variant, norm, gamma, sigma, tau in OPTUNA_TRIALS:
        used = ("gamma", "sigma", "tau") if sigma is not None else ("gamma", "tau")  # Bop: no σ
        values = {"variant": variant, "norm": norm, "gamma": gamma, "sigma": sigma, "tau": tau}
        fixed = optuna.trial.FixedTrial(
            {h: values[h] for h in ("variant", "norm", *used)}
            | {f"{h}_schedule": "constant" for h in used}
        )
        config = suggest(fixed, space, base)
        database.written["opt"].append(
            add_trial(
                store,
                study,
                config,
                describe_config(config),
                fixed.params,
                fixed.distributions,
                rng,
            )
        )
    return database


def written_frame(db: Database, name: str, steps: bool = False) -> pd.DataFrame:
    """The rows written for a study's drawn trials, with each trial's number, label and params."""
    records = []
    for trial in db.written[name]:
        info = {
            "number": trial["number"],
            "label": trial["label"],
            **{f"param_{k}": v for k, v in trial["params"].items()},
        }
        rows = [r for epoch in trial["steps"].values() for r in epoch] if steps else trial["rows"]
        records += [{**info, **r} for r in rows]
    return pd.DataFrame.from_records(records)


def study_data(db: Database, name: str):
    store = Store(db.url)
    return load_study_data(store, store.load(name)), written_frame(db, name)


def lines_by_label(ax):
    return {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }


def test_ablation_figure_draws_the_mean_over_seeds_of_each_value(db):
    data, frame = study_data(db, "abl")
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
    steps = written_frame(db, "abl", steps=True)
    pi = lines_by_label(bottom)["τ = 1e-04"]
    expected = steps[steps["param_tau"] == 1e-4].groupby("step")["pi"].mean()
    assert np.allclose(pi.get_xdata(), expected.index)
    assert np.allclose(pi.get_ydata(), expected.values)
    assert "mean of 2 seeds" in top.get_title()


def test_summary_figure_draws_final_and_best_accuracy_on_a_log_axis(db):
    data, frame = study_data(db, "abl")
    fig = summary_figure(data, "tau")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    drawn = {c.get_label(): c.lines[0] for c in ax.containers}  # error-bar plots
    final = drawn["Bop2ndOrder unbiased, final"]
    last = frame.sort_values("epoch").groupby("number").tail(1)
    expected = last.groupby("param_tau")["val_acc"].mean() * 100

    def data(values):  # matplotlib 3.7's error bars keep their data as an object array
        return np.asarray(values, dtype=float)

    assert np.allclose(data(final.get_xdata()), expected.index) and np.allclose(
        data(final.get_ydata()), expected
    )
    best = drawn["Bop2ndOrder unbiased, best"]
    expected_best = frame.groupby("number").agg(tau=("param_tau", "first"), best=("val_acc", "max"))
    assert np.allclose(data(best.get_ydata()), expected_best.groupby("tau")["best"].mean() * 100)


def test_summary_figure_error_bars_are_95_percent_t_intervals_over_seeds(db):
    from scipy import stats

    data, frame = study_data(db, "abl")
    ax = summary_figure(data, "tau").axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    last = frame.sort_values("epoch").groupby("number").tail(1)
    for label, values in (
        ("Bop2ndOrder unbiased, final", last),
        ("Bop2ndOrder unbiased, best", frame.loc[frame.groupby("number")["val_acc"].idxmax()]),
    ):
        segments = bars[label].lines[2][0].get_segments()  # one vertical bar per value
        for tau, (bottom, top) in zip(sorted(values["param_tau"].unique()), segments):
            acc = 100 * values[values["param_tau"] == tau]["val_acc"].to_numpy()
            assert len(acc) == 2  # two seeds
            half = stats.t.ppf(0.975, 1) * acc.std(ddof=1) / math.sqrt(2)
            assert np.allclose([bottom[1], top[1]], [acc.mean() - half, acc.mean() + half])
    assert "error bars: 95 % CI over seeds (Student t)" in ax.get_title()
    low, high = ax.get_ylim()  # the intervals of 2 seeds run past 0 and 100 %: the axis does not
    assert low >= 0 and high <= 100


def test_schedule_figure_draws_each_arm_and_the_scheduled_value(db):
    data, frame = study_data(db, "sch")
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
        assert len(rows) == 3  # the retry's whole curve, not the crashed attempt's epoch
        assert np.allclose(line.get_ydata(), rows["val_acc"] * 100)


def test_comparison_figure_draws_training_and_validation_per_arm(db):
    data, frame = study_data(db, "sch")
    ax = comparison_figure(data).axes[0]
    solid = lines_by_label(ax)
    assert len(solid) == 3
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 3
    rows = frame[frame["label"] == "unbiased increasing"].sort_values("epoch")
    assert np.allclose(solid["unbiased increasing"].get_ydata(), rows["val_acc"] * 100)
    assert any(np.allclose(line.get_ydata(), rows["train_acc"] * 100) for line in dashed)


def test_pi_figure_network_and_last_layer(db):
    data, _ = study_data(db, "sch")
    fig = pi_figure(data, ["fc3"])
    network, last = fig.axes[0], fig.axes[1]
    steps = written_frame(db, "sch", steps=True)
    rows = steps[steps["label"] == "unbiased constant"].sort_values("step")
    drawn = lines_by_label(network)["unbiased constant"]
    assert np.allclose(drawn.get_xdata(), rows["step"])
    assert np.allclose(drawn.get_ydata(), rows["pi"])
    assert any(np.allclose(line.get_ydata(), rows["pi_fc3"]) for line in last.get_lines())
    assert "layer fc3" in last.get_title()


def test_optuna_history_draws_each_trials_accuracy_in_percent(db):
    data, _ = study_data(db, "opt")
    # the trial that failed before it was configured has no curve
    assert len(data.runs) == len(OPTUNA_TRIALS)
    figures = optuna_figures(data)
    assert {"optuna_history", "optuna_parallel", "optuna_importances"} <= set(figures)
    history = figures["optuna_history"].axes[0]
    assert history.get_ylabel() == "validation accuracy (%)"
    values = {t.number: 100 * t.value for t in data.study.trials if t.value is not None}
    points = np.concatenate([c.get_offsets() for c in history.collections if len(c.get_offsets())])
    drawn = sorted(map(tuple, points))
    assert [n for n, _ in drawn] == sorted(values)
    assert np.allclose([v for _, v in drawn], [values[n] for n in sorted(values)])
    best = lines_by_label(history)["best so far"]
    assert list(best.get_xdata()) == sorted(values)
    assert np.allclose(best.get_ydata(), np.maximum.accumulate([values[n] for n in sorted(values)]))
    assert all(0 <= y <= 100 for y in best.get_ydata())
    # coloured by variant: one legend entry per variant the trials use
    variants = {variant_name(*optimizer_of(v)) for v, *_ in OPTUNA_TRIALS}
    assert set(lines_by_label(history)) | {c.get_label() for c in history.collections} >= variants


def all_text(fig) -> list[str]:
    """Every piece of text a figure shows: titles, labels, tick labels, legends."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels exist once drawn
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def read_back(host, twin, x: float, y: float) -> float:
    """The value a point drawn on ``host`` shows on ``twin``'s axis (same height)."""
    return twin.transData.inverted().transform(host.transData.transform((x, y)))[1]


def test_optuna_parallel_draws_params_on_their_scales_without_a_none_category(db):
    data, _ = study_data(db, "opt")
    fig = optuna_figures(data)["optuna_parallel"]
    host, twins = fig.axes[0], fig.axes[1:]  # one twin axis per column, left to right
    names = [t.get_text() for t in host.get_xticklabels()]
    # σ is not a Bop hyperparameter: its axis comes first, for the trials that have it
    with_sigma = sum(sigma is not None for *_, sigma, _ in OPTUNA_TRIALS)
    assert names == [
        f"σ\n({with_sigma} of {len(OPTUNA_TRIALS)} trials)",
        "variant",
        "norm",
        "γ",
        "τ",
        "final",
    ]
    assert "None" not in all_text(fig)
    scales = [t.get_yscale() for t in twins]
    assert scales == ["log", "linear", "linear", "log", "log", "linear"]  # γ, σ, τ: log-uniform
    objective = twins[-1]
    assert objective.get_ylabel() == "validation accuracy (%)"
    assert 0 <= objective.get_ylim()[0] < objective.get_ylim()[1] <= 100
    # each trial's line passes through its own values, read back on each column's axis
    trials = {t.number: t for t in data.study.trials if t.value is not None}
    lines = host.get_lines()
    assert len(lines) == len(trials)
    for line in lines:
        xs, ys = line.get_xdata(), line.get_ydata()
        read = {int(x): read_back(host, twins[int(x)], x, y) for x, y in zip(xs, ys)}
        match = [
            t
            for t in trials.values()
            if math.isclose(read[5], 100 * t.value, rel_tol=1e-6)
            and math.isclose(read[3], t.params["gamma"], rel_tol=1e-6)
        ]
        assert len(match) == 1
        trial = match[0]
        assert math.isclose(read[4], trial.params["tau"], rel_tol=1e-6)
        if "sigma" in trial.params:
            assert min(xs) == 0 and math.isclose(read[0], trial.params["sigma"], rel_tol=1e-6)
        else:
            assert min(xs) == 1  # a Bop trial's line starts at the variant axis
        for x, name in ((1, "variant"), (2, "norm")):
            ticks = {t.get_text(): t.get_position()[1] for t in twins[x].get_yticklabels()}
            assert math.isclose(ticks[trial.params[name]], read[x], rel_tol=1e-6)


def test_optuna_importances_are_status_importances(db):
    from bopsweep.readers.report import importances

    data, _ = study_data(db, "opt")
    expected = importances(data.study).values
    assert expected
    ax = optuna_figures(data)["optuna_importances"].axes[0]
    drawn = {
        label.get_text(): bar.get_width() for label, bar in zip(ax.get_yticklabels(), ax.patches)
    }
    assert drawn == pytest.approx({param_label(k): v for k, v in expected.items()})
    # Bop trials have no σ: Optuna 5 assesses it on the others, Optuna 4 leaves it out; the
    # title says which
    if "sigma" in expected:
        assert drawn["σ"] > 0 and "; σ" in ax.get_title() and "left out" not in ax.get_title()
    else:
        assert "left out, not set in every trial: σ" in ax.get_title()
    assert "None" not in all_text(ax.figure)


def suptitle(fig) -> str:
    """A figure's suptitle text (Figure.get_suptitle is matplotlib >= 3.8; 3.7 is supported)."""
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def test_no_titles_leaves_no_title_in_any_figure(db):
    from bopsweep.readers.plots import study_figures

    for name in ("abl", "sch", "opt"):
        data, _ = study_data(db, name)
        titled = study_figures(data, layers=["fc3"])
        assert all(suptitle(d.figure) or d.figure.axes[0].get_title() for d in titled)
        bare = study_figures(data, layers=["fc3"], titles=False)
        assert [d.name for d in bare] == [d.name for d in titled]
        for drawn in bare:
            fig = drawn.figure
            assert suptitle(fig) == "", (name, drawn.name)
            for ax in fig.axes:
                assert [ax.get_title(loc) for loc in ("left", "center", "right")] == [""] * 3


def test_plot_command_writes_every_figure_and_an_index(db, tmp_path):

    out = tmp_path / "figs"
    result = invoke(["plot", str(db.folder / "study.db"), "--out", str(out), "--layer", "last"])
    assert result.exit_code == 0, result.output
    expected = {
        "abl": {"ablation_tau.png", "summary_tau.png", "pi.png"},
        "sch": {"schedule.png", "comparison.png", "pi.png"},
        "opt": {"pi.png", "optuna_history.png", "optuna_parallel.png", "optuna_importances.png"},
    }
    index = (out / "index.md").read_text()
    for study, files in expected.items():
        present = {p.name for p in (out / study).iterdir()}
        assert files <= present, (study, present)
        for f in present:
            assert f"({study}/{f})" in index
            image = imread(out / study / f)  # a whole PNG, readable
            assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0
    bare = tmp_path / "bare"
    result = invoke(
        ["plot", str(db.folder / "study.db"), "--study", "opt", "--out", str(bare), "--no-title"],
    )
    assert result.exit_code == 0, result.output
    for f in expected["opt"]:
        assert imread(bare / "opt" / f).shape[2] == imread(out / "opt" / f).shape[2]
    svg = invoke(
        [
            "plot",
            str(db.folder / "study.db"),
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

    database = db.folder / "study.db"
    empty = tmp_path / "empty.db"
    optuna.create_study(storage=f"sqlite:///{empty}", study_name="not-bopsweep")
    (tmp_path / "file").write_text("x")
    cases = [
        (["plot", str(tmp_path / "absent.db")], "no such database"),
        (["plot", str(empty)], "holds no bopsweep study"),
        (
            ["plot", str(database), "--study", "abl", "--param", "gamma"],
            "--param 'gamma' is not swept in study abl",
        ),
        (
            ["plot", str(database), "--out", str(tmp_path / "file" / "sub")],
            "cannot write to",
        ),
        (["plot", str(database), "--format", "jpg"], "is not one of 'png', 'pdf', 'svg'"),
        (["plot", str(database), "--layer", "conv9"], "unknown layer 'conv9'"),
    ]
    for args, fragment in cases:
        one_line_error(invoke(args), fragment)
    with sqlite3.connect(database) as conn:  # nothing was written to the database
        assert conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == 3


def test_seed_bands_of_many_groups_are_each_groups_own_band():
    from bopsweep.readers.plots.data import Run, seed_bands

    def run(number: int, seed: int, acc: list[float]) -> Run:
        epochs = pd.DataFrame({"epoch": range(1, len(acc) + 1), "val_acc": acc})
        return Run(number, f"p{number // 2}", {"seed": seed}, "COMPLETE", epochs, epochs.iloc[0:0])

    groups = {
        "a": [run(0, 0, [0.1, 0.5, 0.7]), run(1, 1, [0.3, 0.4])],  # seeds of unequal length
        "empty": [run(2, 0, [])],
        "b": [run(3, 0, [0.2, float("nan")])],
    }
    bands = seed_bands(groups, "epoch", "val_acc")
    assert bands["a"].to_dict("list") == {
        "epoch": [1, 2, 3], "mean": [0.2, 0.45, 0.7], "min": [0.1, 0.4, 0.7],
        "max": [0.3, 0.5, 0.7],
    }  # fmt: skip
    assert bands["empty"].empty and list(bands["empty"].columns) == ["epoch", "mean", "min", "max"]
    # a missing value is left out, not drawn as a gap: epoch 2 of "b" has none
    assert bands["b"].to_dict("list") == {"epoch": [1], "mean": [0.2], "min": [0.2], "max": [0.2]}
    assert list(bands) == ["a", "empty", "b"]
    arrays = bands.arrays("a")  # the same band, no frame made
    assert arrays["epoch"].tolist() == [1, 2, 3] and arrays["mean"].tolist() == [0.2, 0.45, 0.7]


def test_more_configurations_than_a_legend_names_are_drawn_as_one_collection(tmp_path):
    """15 τ values (past MAX_LEGEND): no line artists, one collection holding each run's curve
    as written, and a note in place of the legend."""
    from matplotlib.collections import LineCollection

    from bopsweep.readers.plots.style import MAX_LEGEND

    store = Store(f"sqlite:///{tmp_path / 'many.db'}", create=True)
    base = TrialConfig(width=1 / 16, batch_size=20, epochs=EPOCHS, device="cpu", tau=1e-6)
    spec = grid_study("many", base, {"tau": [1e-8 * 2**k for k in range(15)]})
    assert len(spec.grid["tau"]) > MAX_LEGEND
    study, _ = store.create(spec)
    rng = np.random.default_rng(1)
    written = [
        add_trial(store, study, p.config, p.label, p.params, p.distributions, rng)
        for p in expand(spec)
    ]
    data = load_study_data(store, store.load("many"), layers=["fc3"])
    pi, ablation = pi_figure(data, ["fc3"]), ablation_figure(data, "tau")
    by_tau = sorted(written, key=lambda t: t["params"]["tau"])  # an ablation's values in order
    for ax, trials, x, y, scale in (
        (pi.axes[0], written, "step", "pi", 1),
        (pi.axes[1], written, "step", "pi_fc3", 1),
        (ablation.axes[0], by_tau, "epoch", "val_acc", 100),
    ):
        assert not ax.get_lines()
        solid = next(c for c in ax.collections if isinstance(c, LineCollection))
        segments = solid.get_segments()
        assert len(segments) == len(trials)
        for segment, trial in zip(segments, trials):
            steps = [r for epoch in trial["steps"].values() for r in epoch]
            rows = trial["rows"] if x == "epoch" else steps
            assert segment[:, 0].tolist() == [r[x] for r in rows]
            assert np.allclose(segment[:, 1], [r[y] * scale for r in rows])
    assert "15 configurations (no legend)" in [t.get_text() for t in pi.axes[0].texts]


def test_seeds_of_many_configurations_are_drawn_as_one_collection_of_bands():
    """13 configurations × 2 seeds: one line each (the seeds' mean) and one band each from
    their minimum to their maximum, as collections."""
    from matplotlib.collections import LineCollection, PolyCollection

    from bopsweep.readers.plots.data import Run, StudyData

    spec = {"kind": "arms", "base": TrialConfig().to_dict(), "grid": {}, "arms": [{}]}
    runs = []
    for k in range(13):
        for seed in (0, 1):
            pi = np.array([-1.0, -2.0, -3.0]) - k - seed
            steps = {"epoch": np.ones(3, int), "step": np.array([10, 20, 30]), "pi": pi}
            label = f"p{k} seed={seed}"
            runs.append(Run(len(runs), label, {"k": k, "seed": seed}, "COMPLETE", {}, steps))
    ax = pi_figure(StudyData("s", spec, runs)).axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    (bands,) = [c for c in ax.collections if type(c) is PolyCollection]
    assert len(lines.get_segments()) == len(bands.get_paths()) == 13
    for k, (segment, band) in enumerate(zip(lines.get_segments(), bands.get_paths())):
        assert segment.tolist() == [[10, -1.5 - k], [20, -2.5 - k], [30, -3.5 - k]]
        low, high = [-2.0 - k, -3.0 - k, -4.0 - k], [-3.0 - k, -2.0 - k, -1.0 - k]
        assert band.vertices[:6].tolist() == [
            [x, y] for x, y in zip([10, 20, 30, 30, 20, 10], low + high)
        ]


def test_a_layer_named_twice_is_drawn_once():
    from bopsweep.readers.plots import parse_layers

    assert parse_layers("fc3,conv1,fc3") == ["fc3", "conv1"]
