"""``bopsweep table``: Table 1 with error bars.

The statistics (:mod:`bopsweep.stats`) against scipy on fixed numbers; the grouping of seeds and
retries (:mod:`bopsweep.table`) on studies built directly in a SQLite database (no training);
the command's three formats, its bad input, and that it writes nothing to the database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math

import numpy as np
import optuna
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from bopsweep.cli import app
from bopsweep.defaults import TableFormat, TableMetric
from bopsweep.stats import Summary, best_arm, compare, compare_to_best, summarize
from bopsweep.store import Store
from bopsweep.store.trial_config import study_base
from bopsweep.studies import StudySpec, TrialConfig, expand, grid_study
from bopsweep.table import arm_label, build_table, group_arms, render
from tests.helpers import one_line_error

runner = CliRunner()
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


def test_indistinguishable_means_p_at_least_alpha():
    close = compare(B, A)
    far = compare({s: v - 2 for s, v in A.items() if s != 1} | {1: 89.7}, A)
    assert close is not None and far is not None
    assert close.p_value >= 0.05 and close.indistinguishable
    assert far.p_value < 0.05 and not far.indistinguishable
    same = compare(dict(A), A)  # every difference zero: scipy's p is NaN, the arms are equal
    assert same is not None and math.isnan(same.p_value) and same.indistinguishable


def test_no_test_with_fewer_than_two_seeds():
    assert compare({0: 91.0}, A) is None
    assert compare(A, {0: 91.0}) is None


def test_the_best_arm_is_the_highest_mean_among_arms_with_two_seeds():
    arms = {"A": A, "B": B, "lucky": {0: 99.0}}
    assert best_arm(arms) == "A"  # one seed cannot be tested against
    assert best_arm({"lucky": {0: 99.0}, "other": {0: 90.0}}) == "lucky"
    assert best_arm({}) is None
    best, tests = compare_to_best(arms)
    assert best == "A" and tests["A"] is None and tests["lucky"] is None
    assert tests["B"] == compare(B, A)


# --- a study built directly in SQLite ------------------------------------------------------------
BASE = TrialConfig(width=1 / 16, batch_size=20, epochs=3, device="cpu")
ARMS = [
    {"label": "Bop", "optimizer": "bop", "gamma": 1e-4, "tau": 1e-8},
    {"label": "Bop2ndOrder biased", "optimizer": "bop2", "unbiased": False},
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


def add_trial(store, study, planned, final=None, state=State.COMPLETE):
    """A trial as the driver stores it: its configuration as the difference from the base."""
    from bopsweep.store.trial_config import config_attrs, study_base

    delta = config_attrs(planned.config.to_dict(), study_base(study.user_attrs))
    attrs = {"config_id": planned.config_id, "label": planned.label, **delta, "attempt": 0}
    if state == State.COMPLETE:
        seed = planned.config.seed % 10
        attrs |= {"best_val_acc": final + BEST_GAIN[seed], "best_epoch": 2}
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


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Study ``t1``: four arms × 3 seeds, one seed crashed and retried, one completed twice, one
    trial still queued; ``g``: a grid with seed as an axis; ``one``: one seed per value;
    ``empty``: nothing complete."""
    path = tmp_path_factory.mktemp("table") / "study.db"
    store = Store(f"sqlite:///{path}", create=True)
    study, _ = store.create(StudySpec("t1", "arms", BASE, arms=ARMS, seeds=3))
    for p in expand(StudySpec("t1", "arms", BASE, arms=ARMS, seeds=3)):
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


def test_the_table_tests_each_configuration_against_the_best(db):
    table = build_table("t1", arms_of(db, "t1"), TableMetric.FINAL)
    rows = {r.arm.label: r for r in table.rows}
    assert table.reference is rows["Bop2ndOrder biased"]
    best = percent(FINAL["Bop2ndOrder biased"])
    unbiased = rows["Bop2ndOrder unbiased"].comparison
    assert unbiased is not None and unbiased.test == "paired" and unbiased.indistinguishable
    assert unbiased.p_value == pytest.approx(
        scipy_stats.ttest_rel(percent(FINAL["Bop2ndOrder unbiased"]), best).pvalue
    )
    latent = rows["latent"].comparison
    assert latent is not None and latent.test == "welch" and not latent.indistinguishable
    assert latent.p_value == pytest.approx(
        scipy_stats.ttest_ind(percent(FINAL["latent"]), best, equal_var=False).pvalue
    )
    assert rows["Bop"].comparison is not None and not rows["Bop"].comparison.indistinguishable
    assert rows["Bop"].final == summarize(percent(FINAL["Bop"]))


def test_metric_best_tests_the_best_epochs(db):
    table = build_table("t1", arms_of(db, "t1"), TableMetric.BEST)
    rows = {r.arm.label: r for r in table.rows}
    best = [100 * (f + g) for f, g in zip(FINAL["Bop2ndOrder biased"], BEST_GAIN)]
    bop = [100 * (f + g) for f, g in zip(FINAL["Bop"], BEST_GAIN)]
    assert rows["Bop"].comparison.p_value == pytest.approx(  # type: ignore[union-attr]
        scipy_stats.ttest_rel(bop, best).pvalue
    )


# --- the command -------------------------------------------------------------------------------
def table(db, *args):
    return runner.invoke(app, ["table", str(db), *args])


def md_row(output, label):
    return next(line for line in output.splitlines() if line.startswith(f"| {label} |"))


def test_table_prints_markdown(db):
    result = table(db, "--study", "t1")
    assert result.exit_code == 0, result.output
    assert "mean ± std (sample, ddof=1) and 95 % confidence interval (Student t)" in result.output
    assert "| configuration | n | final (%) | final 95 % CI |" in result.output
    s = summarize(percent(FINAL["Bop"]))
    bop = md_row(result.output, "Bop")
    assert f"| 3 | {s.mean:.2f} ± {s.std:.2f} | [{s.low:.2f}, {s.high:.2f}] |" in bop
    assert "| worse | paired t (3 seeds) |" in bop
    assert "| best | — | — |" in md_row(result.output, "Bop2ndOrder biased")
    unbiased = md_row(result.output, "Bop2ndOrder unbiased")
    p = scipy_stats.ttest_rel(
        percent(FINAL["Bop2ndOrder unbiased"]), percent(FINAL["Bop2ndOrder biased"])
    ).pvalue
    assert unbiased.endswith(f"| indistinguishable | paired t (3 seeds) | {p:.3f} |")
    assert "| worse | Welch t |" in md_row(result.output, "latent")


def test_one_seed_shows_the_mean_and_n_1_without_interval_or_test(db):
    result = table(db, "--study", "one")
    assert result.exit_code == 0, result.output
    assert md_row(result.output, "tau=1e-06") == (
        "| tau=1e-06 | 1 | 85.00 (n=1) | — | 85.12 (n=1) | — | — | — | — |"
    )
    assert "no configuration has two seeds" in result.output


def test_table_prints_latex(db):
    result = table(db, "--study", "t1", "--format", "latex")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("% Table 1, study t1")
    assert r"\begin{tabular}{lrlllllll}" in lines and r"\end{tabular}" in lines
    s = summarize(percent(FINAL["Bop"]))
    assert any(
        line.startswith(rf"Bop & 3 & {s.mean:.2f} $\pm$ {s.std:.2f} & [{s.low:.2f}, {s.high:.2f}]")
        for line in lines
    )
    assert r"final 95 \% CI" in result.output and "$p$" in result.output


def test_table_prints_csv_with_full_precision(db):
    result = table(db, "--study", "t1", "--format", "csv", "--metric", "best")
    assert result.exit_code == 0, result.output
    rows = {r["configuration"]: r for r in csv.DictReader(io.StringIO(result.output))}
    assert list(rows) == [a["label"] for a in ARMS]
    latent = rows["latent"]
    values = [100 * (f + g) for f, g in zip(FINAL["latent"], BEST_GAIN)]
    s = summarize(values)
    assert latent["n"] == "3" and latent["seeds"] == "10 11 12" and latent["metric"] == "best"
    assert float(latent["best_mean"]) == pytest.approx(s.mean, abs=1e-12)
    assert float(latent["best_ci_half_width"]) == pytest.approx(s.half_width, abs=1e-12)
    assert latent["test"] == "welch" and latent["indistinguishable"] == "false"
    assert rows["Bop2ndOrder biased"]["reference"] == "true"
    assert rows["Bop2ndOrder biased"]["p_value"] == ""


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
        runner.invoke(app, ["table", str(tmp_path / "absent.db")]),
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
