"""``bopsweep table``: Table 1 with error bars.

The statistics (:mod:`bopsweep.readers.stats`) against scipy on fixed numbers; the grouping of
seeds and
retries (:mod:`bopsweep.readers.table`) on studies built directly in a SQLite database (no
training);
the command's three formats, its baseline, its bad input, and that it writes nothing to the
database. The comparison with the baseline (Holm, the difference's interval, verdicts) is
tests/test_stats.py's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import replace

import numpy as np
import optuna
import pytest
from scipy import stats as scipy_stats

from bopsweep.defaults import TableFormat, TableMetric
from bopsweep.readers.stats import Summary, compare, holm, summarize
from bopsweep.readers.table import (
    BY_BASE,
    BY_FLAG,
    BY_ORDER,
    arm_label,
    build_table,
    group_arms,
)
from bopsweep.readers.table_render import render
from bopsweep.store import Store
from bopsweep.store.trial_config import study_base
from bopsweep.studies import StudySpec, TrialConfig, expand, grid_study
from bopsweep.studies.designs import ArmsDesign
from tests.helpers import invoke, one_line_error

State = optuna.trial.TrialState

# --- the statistics ------------------------------------------------------------------------------
X = [91.2, 90.8, 91.5, 90.9, 91.1]


def test_an_arm_is_its_mean_sample_std_and_student_t_95_interval():
    s = summarize(X)
    n, sd = len(X), float(np.std(X, ddof=1))
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(X), abs=1e-12)
    assert s.std == pytest.approx(sd, abs=1e-12)
    assert s.half_width == pytest.approx(half, abs=1e-12)
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=np.mean(X), scale=scipy_stats.sem(X))
    assert (s.low, s.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert s.confidence == 0.95


def test_two_seeds_have_the_widest_interval_t_0975_1():
    s = summarize([90.0, 92.0])  # s = √2, so the half width is t(0.975, 1) = 12.706…
    assert s.std == pytest.approx(math.sqrt(2))
    assert s.half_width == pytest.approx(12.706204736, rel=1e-9)


def test_a_single_seed_has_its_mean_and_nothing_else():
    assert summarize([91.0]) == Summary(n=1, mean=91.0)
    assert summarize([91.0]).low is None
    with pytest.raises(ValueError):
        summarize([])


A = {0: 91.95, 1: 91.81, 2: 92.03, 3: 91.90}
B = {0: 91.40, 1: 91.88, 2: 91.52, 3: 91.60}  # the same seeds as A


def test_arms_that_share_seeds_get_a_paired_t_test_paired_by_seed():
    shuffled = {s: B[s] for s in (2, 0, 3, 1)}  # pairs are made by seed, not by order
    c = compare(shuffled, A)
    assert c is not None and c.test == "paired" and c.n == 4
    assert c.p_value == pytest.approx(
        scipy_stats.ttest_rel(list(B.values()), list(A.values())).pvalue
    )
    assert c.p_value != pytest.approx(
        scipy_stats.ttest_rel(list(shuffled.values()), list(A.values())).pvalue
    )


def test_arms_that_share_some_seeds_are_paired_over_those():
    b = {**B, 7: 80.0}  # seed 7 only in b: out of the test
    c = compare(b, A)
    assert c is not None and c.test == "paired" and c.n == 4
    assert c.p_value == pytest.approx(
        scipy_stats.ttest_rel(list(B.values()), list(A.values())).pvalue
    )


def test_arms_sharing_fewer_than_two_seeds_get_welchs_t_test():
    other = {10: 88.0, 11: 89.0, 12: 88.5}
    c = compare(other, A)
    assert c is not None and c.test == "welch" and c.n == 7
    expected = scipy_stats.ttest_ind(list(other.values()), list(A.values()), equal_var=False)
    assert c.p_value == pytest.approx(expected.pvalue)
    assert c.p_value != pytest.approx(
        scipy_stats.ttest_ind(list(other.values()), list(A.values())).pvalue  # not Student's
    )
    one_shared = {0: 88.0, 11: 89.0, 12: 88.5}
    assert compare(one_shared, A).test == "welch"  # type: ignore[union-attr]


def test_the_difference_is_the_arm_minus_the_baseline():
    c = compare(B, A)
    assert c is not None and c.tested and not c.equal
    assert c.diff == pytest.approx(np.mean(list(B.values())) - np.mean(list(A.values())))
    same = compare(dict(A), A)  # every difference zero: no test, the arms are equal
    assert same is not None and math.isnan(same.p_value) and same.equal


def test_no_test_with_fewer_than_two_seeds():
    assert compare({0: 91.0}, A) is None
    assert compare(A, {0: 91.0}) is None


# --- a study built directly in SQLite ------------------------------------------------------------
BASE = TrialConfig(width=1 / 16, batch_size=20, epochs=3, device="cpu")
ARMS = [
    {"label": "Bop", "optimizer": "bop", "gamma": 1e-4, "tau": 1e-8},
    {"label": "Bop2ndOrder biased", "optimizer": "bop2", "unbiased": False, "gamma": 1e-6},
    {"label": "Bop2ndOrder unbiased", "optimizer": "bop2", "unbiased": True},
    {"label": "latent", "optimizer": "latent", "seed": 10},  # seeds 10–12: no seed shared
]
# final validation accuracy per arm and seed (fractions, as trials store them)
FINAL = {
    "Bop": [0.9071, 0.9102, 0.9085],
    "Bop2ndOrder biased": [0.9195, 0.9181, 0.9203],
    "Bop2ndOrder unbiased": [0.9140, 0.9188, 0.9152],
    "latent": [0.8800, 0.8900, 0.8850],
}
BEST_GAIN = [0.0012, 0.0030, 0.0021]  # best epoch − final, per seed
TRAIN_GAP = [0.051, 0.047, 0.055]  # training − validation accuracy, per seed
NO_TRAIN = "latent"  # its trials were made by other means: no final_train_acc


def add_trial(store, study, planned, final=None, state=State.COMPLETE):
    """A trial as the driver stores it: its configuration as the difference from the base."""
    from bopsweep.store.trial_config import config_attrs, study_base

    delta = config_attrs(planned.config.to_dict(), study_base(study.user_attrs))
    attrs = {"config_id": planned.config_id, "label": planned.label, **delta, "attempt": 0}
    if state == State.COMPLETE:
        seed = planned.config.seed % 10
        attrs |= {"best_val_acc": final + BEST_GAIN[seed], "best_epoch": 2}
        if planned.label != NO_TRAIN:
            attrs["final_train_acc"] = final + TRAIN_GAP[seed]
    else:
        attrs |= {"failure": "crash", "fail_reason": "killed by signal 9"}
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=final if state == State.COMPLETE else None,
            params=planned.params,
            distributions=planned.distributions,
            user_attrs=attrs,
        )
    )


TAUS = [1e-6, 1e-4, 1e-2]  # the base point in the middle: neither the first nor the best
CENTRE = {1e-6: [0.80, 0.81, 0.82], 1e-4: [0.850, 0.860, 0.865], 1e-2: [0.90, 0.905, 0.92]}
TWO = {1e-6: [0.80, 0.83], 1e-4: [0.85, 0.875]}  # two seeds, a clear difference
SHIFT = {1e-6: [0.9071, 0.9102, 0.9085], 1e-4: [0.9195, 0.9226, 0.9209]}  # +1.24 on every seed


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Study ``t1``: four arms × 3 seeds, one seed crashed and retried, one completed twice, one
    trial still queued; ``g``: a grid with seed as an axis; ``one``: one seed per value;
    ``empty``: nothing complete; ``centre``: a grid of 3 seeds around its base point; ``two``:
    two seeds; ``shift``: the same difference on every seed."""
    path = tmp_path_factory.mktemp("table") / "study.db"
    store = Store(f"sqlite:///{path}", create=True)
    spec = StudySpec("t1", ArmsDesign(swept=None), BASE, arms=ARMS, seeds=3)
    study, _ = store.create(spec)
    for p in expand(spec):
        final = FINAL[p.label][p.config.seed % 10]
        if p.label == "Bop" and p.config.seed == 1:  # crashed, then retried
            add_trial(store, study, p, state=State.FAIL)
        if p.label == "Bop2ndOrder unbiased" and p.config.seed == 2:  # completed twice
            add_trial(store, study, p, final=0.5)
        add_trial(store, study, p, final=final)
    add_trial(store, study, p, state=State.WAITING)

    grid = grid_study("g", BASE, {"tau": [1e-6, 1e-4], "seed": [0, 1]})
    study, _ = store.create(grid)
    for i, p in enumerate(expand(grid)):
        add_trial(store, study, p, final=0.80 + i / 100)
    one = grid_study("one", BASE, {"tau": [1e-6, 1e-4]})
    study, _ = store.create(one)
    for i, p in enumerate(expand(one)):
        add_trial(store, study, p, final=0.85 + i / 100)
    centre = grid_study("centre", replace(BASE, tau=1e-4), {"tau": TAUS}, seeds=3)
    study, _ = store.create(centre)
    for p in expand(centre):
        add_trial(store, study, p, final=CENTRE[p.config.tau][p.config.seed])
    for name, finals in (("two", TWO), ("shift", SHIFT)):
        spec = grid_study(name, BASE, {"tau": TAUS[:2]}, seeds=len(finals[1e-6]))
        study, _ = store.create(spec)
        for p in expand(spec):
            add_trial(store, study, p, final=finals[p.config.tau][p.config.seed])
    empty = grid_study("empty", BASE, {"tau": [1e-6]})
    study, _ = store.create(empty)
    add_trial(store, study, expand(empty)[0], state=State.FAIL)
    return path


def arms_of(db, name):
    study = Store.open_readonly(f"sqlite:///{db}").load(name)
    return group_arms(study.get_trials(), study_base(study.user_attrs))


def percent(fractions):
    return [100 * f for f in fractions]


def test_seeds_of_a_configuration_are_one_row_and_each_seed_counts_once(db):
    arms = {a.label: a for a in arms_of(db, "t1")}
    assert list(arms) == [a["label"] for a in ARMS]  # in the study's order
    assert list(arms["latent"].final) == [10, 11, 12]
    for label, finals in FINAL.items():
        assert list(arms[label].final.values()) == pytest.approx(percent(finals))
        gains = [f + g for f, g in zip(finals, BEST_GAIN)]
        assert list(arms[label].best.values()) == pytest.approx(percent(gains))
    # the crashed attempt is not counted, only its retry; of two completions the latest
    assert len(arms["Bop"].final) == 3
    assert arms["Bop2ndOrder unbiased"].final[2] == pytest.approx(91.52)


def test_the_seed_is_taken_out_of_the_label(db):
    assert arm_label("tau=1e-06 seed=3") == "tau=1e-06"
    assert arm_label("seed=3 tau=1e-06") == "tau=1e-06"
    assert arm_label("unbiased increasing") == "unbiased increasing"
    arms = arms_of(db, "g")
    assert [(a.label, list(a.final)) for a in arms] == [
        ("tau=1e-06", [0, 1]),
        ("tau=0.0001", [0, 1]),
    ]


def raw_p(label, baseline="Bop", values=FINAL):
    """scipy's paired p of ``label`` against ``baseline`` over their (shared) seeds, in %; the
    latent arm shares no seed: Welch's."""
    a, b = percent(values[label]), percent(values[baseline])
    if label == "latent" or baseline == "latent":
        return scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
    return scipy_stats.ttest_rel(a, b).pvalue


def test_an_arms_study_compares_with_its_first_arm_never_the_best(db):
    table = build_table("t1", arms_of(db, "t1"), TableMetric.FINAL)
    rows = {r.arm.label: r for r in table.rows}
    assert table.baseline is rows["Bop"] and table.chosen == BY_ORDER  # the worst mean, first
    others = ["Bop2ndOrder biased", "Bop2ndOrder unbiased", "latent"]
    raw = [raw_p(label) for label in others]
    for label, p, p_holm in zip(others, raw, holm(raw)):
        o = rows[label].outcome
        assert o.comparison is not None and o.comparison.p_value == pytest.approx(p, abs=1e-15)
        assert o.p_holm == pytest.approx(p_holm, abs=1e-15)
    assert rows["latent"].outcome.comparison.test == "welch"  # type: ignore[union-attr]
    assert [rows[k].outcome.verdict for k in others] == ["better", "better", "worse"]
    assert rows["Bop"].final == summarize(percent(FINAL["Bop"]))
    gains = [f + g for f, g in zip(FINAL["Bop"], TRAIN_GAP)]
    assert rows["Bop"].train == summarize(percent(gains))
    assert rows["latent"].train is None  # its trials do not record it


def test_metric_best_compares_the_best_epochs(db):
    table = build_table("t1", arms_of(db, "t1"), TableMetric.BEST)
    rows = {r.arm.label: r for r in table.rows}
    bop = [100 * (f + g) for f, g in zip(FINAL["Bop"], BEST_GAIN)]
    biased = [100 * (f + g) for f, g in zip(FINAL["Bop2ndOrder biased"], BEST_GAIN)]
    c = rows["Bop2ndOrder biased"].outcome.comparison
    assert c is not None and c.p_value == pytest.approx(scipy_stats.ttest_rel(biased, bop).pvalue)
    assert c.diff == pytest.approx(np.mean(biased) - np.mean(bop))


# --- the command -------------------------------------------------------------------------------
def table(db, *args):
    return invoke(["table", str(db), *args])


def md_row(output, label):
    return next(line for line in output.splitlines() if line.startswith(f"| {label} |"))


def test_table_prints_markdown(db):
    result = table(db, "--study", "t1")
    assert result.exit_code == 0, result.output
    assert (
        "mean ± std (sample, ddof=1), with 95 % confidence intervals (Student t)" in result.output
    )
    assert f"Baseline: Bop ({BY_ORDER})." in result.output
    assert "adjusted for the 3 tests by Holm's method" in result.output
    assert (
        "| configuration | n | final (%) | final 95 % CI | best epoch (%) | best epoch 95 % CI "
        "| train (%) | Δ final vs baseline (pp) | Δ 95 % CI | test | p (Holm) | vs baseline |"
    ) in result.output
    s = summarize(percent(FINAL["Bop"]))
    bop = md_row(result.output, "Bop")
    assert f"| 3 | {s.mean:.2f} ± {s.std:.2f} | [{s.low:.2f}, {s.high:.2f}] |" in bop
    assert bop.endswith("| — | — | — | — | baseline |")
    train = summarize(percent([f + g for f, g in zip(FINAL["Bop"], TRAIN_GAP)]))
    assert f"| {train.mean:.2f} ± {train.std:.2f} |" in bop
    biased = md_row(result.output, "Bop2ndOrder biased")
    c = compare(dict(enumerate(percent(FINAL["Bop2ndOrder biased"]))),
                dict(enumerate(percent(FINAL["Bop"]))))  # fmt: skip
    assert c is not None
    others = ["Bop2ndOrder biased", "Bop2ndOrder unbiased", "latent"]
    p_holm = holm([raw_p(label) for label in others])
    assert biased.endswith(
        f"| +{c.diff:.2f} | [{c.low:.2f}, {c.high:.2f}] | paired t (3 seeds) | {p_holm[0]:.3f} "
        "| better |"
    )
    assert "| — | -2.36 | [" in md_row(result.output, "latent")  # no train accuracy; Δ
    assert md_row(result.output, "latent").endswith(f"| Welch t | {p_holm[2]:.3f} | worse |")


def test_the_default_baseline_is_the_study_base_point(db):
    result = table(db, "--study", "centre")
    assert result.exit_code == 0, result.output
    assert f"Baseline: tau=0.0001 ({BY_BASE})." in result.output  # not the first, not the best
    assert md_row(result.output, "tau=0.0001").endswith("| — | — | — | — | baseline |")
    assert md_row(result.output, "tau=1e-06").endswith("| worse |")
    assert md_row(result.output, "tau=0.01").endswith("| better |")


def test_baseline_picks_the_configuration_by_its_printed_label(db):
    result = table(db, "--study", "t1", "--baseline", "Bop2ndOrder biased")
    assert result.exit_code == 0, result.output
    assert f"Baseline: Bop2ndOrder biased ({BY_FLAG})." in result.output
    assert md_row(result.output, "Bop2ndOrder biased").endswith("| baseline |")
    raw = [raw_p(k, "Bop2ndOrder biased") for k in ("Bop", "Bop2ndOrder unbiased", "latent")]
    p_holm = holm(raw)
    unbiased = md_row(result.output, "Bop2ndOrder unbiased")
    assert unbiased.endswith(f"| paired t (3 seeds) | {p_holm[1]:.3f} | indistinguishable |")
    assert md_row(result.output, "Bop").endswith(f"| {p_holm[0]:.3f} | worse |")
    grid = table(db, "--study", "centre", "--baseline", "tau=1e-06")
    assert md_row(grid.output, "tau=1e-06").endswith("| baseline |")
    assert md_row(grid.output, "tau=0.0001").endswith("| better |")


def test_an_unknown_baseline_is_one_line_listing_the_labels_and_writes_nothing(db, tmp_path):
    out = tmp_path / "t.md"
    result = table(db, "--study", "t1", "--baseline", "Adam", "-o", str(out))
    one_line_error(
        result,
        "--baseline 'Adam' is no configuration of the study; its labels: 'Bop', "
        "'Bop2ndOrder biased', 'Bop2ndOrder unbiased', 'latent'",
    )
    assert list(tmp_path.iterdir()) == []
    one_line_error(table(db, "--study", "t1", "--baseline", "bop"), "its labels: 'Bop',")


def test_below_three_seeds_the_test_is_shown_without_a_verdict(db):
    result = table(db, "--study", "two")
    assert result.exit_code == 0, result.output
    assert "none where the configuration or the baseline has fewer than 3 seeds" in result.output
    p = scipy_stats.ttest_rel([85.0, 87.5], [80.0, 83.0]).pvalue
    assert p < 0.05  # a verdict of "better" on two seeds, were it drawn
    assert md_row(result.output, "tau=0.0001").endswith(
        f"| paired t (2 seeds) | {p:.3f} | n < 3: no verdict |"
    )
    rows = list(csv.DictReader(io.StringIO(table(db, "--study", "two", "--format", "csv").output)))
    assert rows[1]["verdict"] == "few seeds" and float(rows[1]["p_holm"]) == pytest.approx(p)


def test_a_constant_difference_over_seeds_is_no_variance_not_a_verdict(db):
    result = table(db, "--study", "shift")
    assert result.exit_code == 0, result.output
    assert md_row(result.output, "tau=0.0001").endswith(
        "| +1.24 | — | paired t (3 seeds) | n/a (no variance) | no variance: no test |"
    )
    assert "No configuration has a t-test against the baseline" in result.output


def test_one_seed_shows_the_mean_and_n_1_without_interval_or_test(db):
    result = table(db, "--study", "one")
    assert result.exit_code == 0, result.output
    assert md_row(result.output, "tau=0.0001") == (
        "| tau=0.0001 | 1 | 86.00 (n=1) | — | 86.12 (n=1) | — | 91.10 (n=1) | +1.00 | — | — | — "
        "| — |"
    )
    assert "The baseline has fewer than two seeds: no interval of a difference, no test." in (
        result.output
    )


def test_table_prints_latex(db):
    result = table(db, "--study", "t1", "--format", "latex")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("% Table 1, study t1")
    assert r"\begin{tabular}{lrllllllllll}" in lines and r"\end{tabular}" in lines
    s = summarize(percent(FINAL["Bop"]))
    assert any(
        line.startswith(rf"Bop & 3 & {s.mean:.2f} $\pm$ {s.std:.2f} & [{s.low:.2f}, {s.high:.2f}]")
        for line in lines
    )
    assert r"final 95 \% CI" in result.output and "$p$ (Holm)" in result.output
    assert r"$\Delta$ final vs baseline (pp)" in result.output


def test_table_prints_csv_with_raw_and_holm_p_and_the_differences_interval(db):
    result = table(db, "--study", "t1", "--format", "csv", "--metric", "best")
    assert result.exit_code == 0, result.output
    rows = {r["configuration"]: r for r in csv.DictReader(io.StringIO(result.output))}
    assert list(rows) == [a["label"] for a in ARMS]
    best = {k: [100 * (f + g) for f, g in zip(v, BEST_GAIN)] for k, v in FINAL.items()}
    latent = rows["latent"]
    s = summarize(best["latent"])
    assert latent["n"] == "3" and latent["seeds"] == "10 11 12" and latent["metric"] == "best"
    assert float(latent["best_mean"]) == pytest.approx(s.mean, abs=1e-12)
    assert float(latent["best_ci_half_width"]) == pytest.approx(s.half_width, abs=1e-12)
    assert latent["train_n"] == "0" and latent["train_mean"] == ""
    welch = scipy_stats.ttest_ind(best["latent"], best["Bop"], equal_var=False)
    assert latent["test"] == "welch" and latent["verdict"] == "worse"
    assert float(latent["diff_mean"]) == pytest.approx(
        np.mean(best["latent"]) - np.mean(best["Bop"])
    )
    if hasattr(welch, "confidence_interval"):  # scipy ≥ 1.11
        ci = welch.confidence_interval()
        assert float(latent["diff_ci_low"]) == pytest.approx(ci.low, abs=1e-9)
        assert float(latent["diff_ci_high"]) == pytest.approx(ci.high, abs=1e-9)
    others = ["Bop2ndOrder biased", "Bop2ndOrder unbiased", "latent"]
    raw = [raw_p(k, values={k: [v / 100 for v in b] for k, b in best.items()}) for k in others]
    for label, p, p_holm in zip(others, raw, holm(raw)):
        assert float(rows[label]["p_value"]) == pytest.approx(p, abs=1e-15)
        assert float(rows[label]["p_holm"]) == pytest.approx(p_holm, abs=1e-15)
    assert float(rows["latent"]["p_holm"]) > float(rows["latent"]["p_value"])
    bop = rows["Bop"]
    assert bop["baseline"] == "true" and bop["baseline_chosen"] == BY_ORDER
    assert (bop["p_value"], bop["p_holm"], bop["verdict"]) == ("", "", "baseline")
    assert bop["train_n"] == "3"


def test_table_writes_a_file_once_then_only_with_force(db, tmp_path):
    out = tmp_path / "table.tex"
    result = table(db, "--study", "t1", "--format", "latex", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote the table of 4 configurations" in result.output
    assert out.read_text() == table(db, "--study", "t1", "--format", "latex").output
    one_line_error(table(db, "--study", "t1", "-o", str(out)), "exists; pass --force")
    assert table(db, "--study", "t1", "-o", str(out), "--force").exit_code == 0
    assert out.read_text().startswith("Table 1, study t1")
    assert [p.name for p in tmp_path.iterdir()] == ["table.tex"]  # no temporary file left


def test_table_bad_input_is_one_line_and_exit_2(db, tmp_path):
    (tmp_path / "exists.md").write_text("x")
    cases = [
        (["--study", "nope"], "no bopsweep study named 'nope'"),
        ([], "holds several studies"),
        (["--study", "t1", "--format", "html"], "'markdown', 'latex', 'csv'"),
        (["--study", "t1", "--metric", "mean"], "'final', 'best'"),
        (["--study", "t1", "-o", str(tmp_path / "exists.md")], "exists; pass --force"),
        (["--study", "t1", "-o", str(db), "--force"], "is the study's database"),
        (["--study", "t1", "-o", str(tmp_path / "no" / "t.md")], "does not exist"),
        (["--study", "empty"], "study empty has no complete trial yet"),
    ]
    for args, fragment in cases:
        one_line_error(table(db, *args), fragment)
    one_line_error(
        invoke(["table", str(tmp_path / "absent.db")]),
        "no such database",
    )


def test_table_changes_no_byte_of_the_database(db, tmp_path):
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    files = sorted(p.name for p in db.parent.iterdir())
    for fmt in TableFormat:
        for metric in TableMetric:
            args = ["--study", "t1", "--format", fmt.value, "--metric", metric.value]
            assert table(db, *args).exit_code == 0
    assert table(db, "--study", "t1", "-o", str(tmp_path / "t.csv")).exit_code == 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir()) == files  # no journal or WAL left


def test_render_needs_no_command_line(db):
    text = render(build_table("t1", arms_of(db, "t1")), TableFormat.MARKDOWN)
    assert text == table(db, "--study", "t1").output
