"""The comparison with a baseline (:mod:`bopsweep.readers.stats`) against independent computations
on
fixed numbers: Holm's adjustment against statsmodels and against values worked by hand, the
difference's intervals against scipy's own ``confidence_interval()``, and the verdict rules
(adjusted p, at least three seeds, no verdict without variance)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from bopsweep.readers.stats import (
    MIN_SEEDS_FOR_VERDICT,
    compare,
    compare_to_baseline,
    holm,
)

P = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.6]
# by hand: sorted 0.005 0.01 0.03 0.04 0.04 0.2 0.6, times 7 6 5 4 3 2 1 = 0.035 0.06 0.15 0.16
# 0.12 0.4 0.6, made non-decreasing: 0.035 0.06 0.15 0.16 0.16 0.4 0.6, back in the given order
P_HOLM = [0.06, 0.16, 0.15, 0.035, 0.4, 0.16, 0.6]


def test_holm_matches_values_worked_by_hand():
    assert holm(P) == pytest.approx(P_HOLM, abs=1e-15)
    assert holm([0.3, 0.5]) == pytest.approx([0.6, 0.6])  # capped at 1 by monotony, not above
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # 2 × 0.6 capped at 1
    assert holm([0.02]) == [0.02]  # one test: nothing to adjust
    assert holm([]) == []


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    for ps in (P, [0.001, 0.001, 0.5, 0.049], [0.9, 0.01, 0.02, 0.03, 0.04, 0.05, 0.0001]):
        reject, expected, _, _ = multitest.multipletests(ps, alpha=0.05, method="holm")
        assert holm(ps) == pytest.approx(list(expected), abs=1e-15)
        assert [p < 0.05 for p in holm(ps)] == list(reject)


A = {0: 91.95, 1: 91.81, 2: 92.03, 3: 91.90}
B = {0: 91.40, 1: 91.88, 2: 91.52, 3: 91.60}
OTHER = {10: 88.0, 11: 89.0, 12: 88.5}


def test_the_paired_difference_and_its_interval_are_scipys_ttest_rel():
    c = compare(B, A)
    expected = scipy_stats.ttest_rel(list(B.values()), list(A.values()))
    if not hasattr(expected, "confidence_interval"):
        pytest.skip("scipy before 1.10 has no ttest_rel(...).confidence_interval()")
    ci = expected.confidence_interval(0.95)
    assert c is not None and c.test == "paired"
    assert c.diff == pytest.approx(sum(B.values()) / 4 - sum(A.values()) / 4, abs=1e-12)
    assert (c.low, c.high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert c.p_value == pytest.approx(expected.pvalue, abs=1e-15)


def test_welchs_difference_and_its_interval_are_scipys_ttest_ind():
    c = compare(OTHER, A)
    expected = scipy_stats.ttest_ind(list(OTHER.values()), list(A.values()), equal_var=False)
    if not hasattr(expected, "confidence_interval"):
        pytest.skip("scipy before 1.11 has no ttest_ind(...).confidence_interval()")
    ci = expected.confidence_interval(0.95)
    assert c is not None and c.test == "welch"
    assert c.diff == pytest.approx(88.5 - sum(A.values()) / 4, abs=1e-12)
    assert (c.low, c.high) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    student = scipy_stats.ttest_ind(list(OTHER.values()), list(A.values())).confidence_interval()
    assert c.low != pytest.approx(student.low, abs=1e-6)  # Welch's ν, not Student's pooled one


def test_a_constant_paired_difference_is_no_variance_and_gets_no_test_or_verdict():
    base = {0: 1.0, 1: 2.0, 2: 3.0}
    shifted = {s: v - 0.5 for s, v in base.items()}  # every seed exactly 0.5 lower
    assert scipy_stats.ttest_rel(list(shifted.values()), list(base.values())).pvalue == 0.0
    c = compare(shifted, base)
    assert c is not None and not c.tested and math.isnan(c.p_value) and not c.equal
    assert c.diff == -0.5 and c.half_width == 0.0
    # accuracies in %: the same 1.24 points on every seed, up to float rounding
    bop = {0: 90.71, 1: 91.02, 2: 90.85}
    bop2 = {s: 100 * (v / 100 + 0.0124) for s, v in bop.items()}
    assert scipy_stats.ttest_rel(list(bop2.values()), list(bop.values())).pvalue < 1e-10
    outcomes = compare_to_baseline({"Bop": bop, "Bop2": bop2, "lower": shifted | {}}, "Bop")
    assert outcomes["Bop2"].verdict == "no variance" and outcomes["Bop2"].p_holm is None
    assert outcomes["Bop2"].diff == pytest.approx(1.24)


def test_two_constant_arms_get_no_welch_test_and_equal_arms_stay_indistinguishable():
    c = compare({10: 91.0, 11: 91.0, 12: 91.0}, {0: 90.0, 1: 90.0, 2: 90.0})
    assert c is not None and c.test == "welch" and not c.tested and c.diff == 1.0
    outcomes = compare_to_baseline({"base": A, "same": dict(A)}, "base")
    assert outcomes["same"].verdict == "indistinguishable"
    assert outcomes["same"].comparison is not None and outcomes["same"].comparison.equal
    assert outcomes["same"].p_holm is None  # not one of the family


def test_the_verdict_reads_the_holm_adjusted_p_and_the_sign_of_the_difference():
    base = {0: 90.0, 1: 91.0, 2: 90.5, 3: 90.2}
    arms = {
        "base": base,
        "better": {0: 90.9, 1: 91.7, 2: 91.6, 3: 91.1},
        "worse": {0: 88.9, 1: 90.1, 2: 89.3, 3: 89.2},
        "close": {0: 90.3, 1: 91.1, 2: 90.7, 3: 90.3},
        "null": {0: 90.3, 1: 90.8, 2: 90.6, 3: 90.1},
    }
    raw = {k: scipy_stats.ttest_rel(list(v.values()), list(base.values())).pvalue
           for k, v in arms.items() if k != "base"}  # fmt: skip
    outcomes = compare_to_baseline(arms, "base")
    assert outcomes["base"].verdict == "baseline"
    assert {k: o.p_holm for k, o in outcomes.items() if k != "base"} == pytest.approx(
        dict(zip(raw, holm(list(raw.values()))))
    )
    assert outcomes["better"].verdict == "better" and outcomes["better"].p_holm < 0.05  # type: ignore[operator]
    assert outcomes["worse"].verdict == "worse"
    # raw p below α, the adjusted one not: indistinguishable
    assert raw["close"] < 0.05 <= outcomes["close"].p_holm  # type: ignore[operator]
    assert outcomes["close"].verdict == "indistinguishable"
    assert outcomes["null"].verdict == "indistinguishable"


def test_no_verdict_below_three_seeds_in_the_arm_or_the_baseline():
    assert MIN_SEEDS_FOR_VERDICT == 3
    base = {0: 90.0, 1: 91.0, 2: 90.5}
    far = {0: 80.0, 1: 81.2, 2: 80.4}
    outcomes = compare_to_baseline({"base": base, "far2": {0: 80.0, 1: 81.2}, "far": far}, "base")
    assert outcomes["far2"].verdict == "few seeds"  # tested and shown, no verdict
    assert outcomes["far2"].p_holm is not None and outcomes["far2"].p_holm < 0.05
    assert outcomes["far"].verdict == "worse"
    two = compare_to_baseline({"base": {0: 90.0, 1: 91.0}, "far": far}, "base")
    assert two["far"].verdict == "few seeds"  # the baseline has two


def test_no_verdict_from_a_paired_test_of_two_pairs_when_arms_of_three_share_two_seeds():
    base = {1: 90.0, 2: 91.0, 3: 90.5}
    arm = {0: 95.0, 1: 96.1, 2: 96.9}  # three seeds each, two of them shared
    outcome = compare_to_baseline({"base": base, "arm": arm}, "base")["arm"]
    assert outcome.comparison.test == "paired" and outcome.comparison.n == 2
    assert outcome.p_holm < 0.05  # significant by a test of one degree of freedom
    assert outcome.verdict == "few seeds"  # which decides nothing


def test_an_arm_of_one_seed_has_its_difference_of_means_and_no_test():
    outcomes = compare_to_baseline({"base": A, "one": {0: 90.0}}, "base")
    one = outcomes["one"]
    assert one.verdict == "no test" and one.comparison is None and one.p_holm is None
    assert one.diff == pytest.approx(90.0 - sum(A.values()) / 4)
