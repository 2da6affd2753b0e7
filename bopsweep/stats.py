"""Statistics over seeds: an arm's mean, spread and confidence interval, and whether two arms
can be told apart. Pure numbers (scipy and the standard library), no study, no output.

For the values x_1 … x_n of one arm (one per seed):

* mean  x̄ = Σ x_i / n
* sample standard deviation  s = √( Σ (x_i − x̄)² / (n − 1) )   (ddof = 1)
* confidence interval  x̄ ± h,  h = t(1 − α/2, n − 1) · s / √n, with t(q, ν) the q-quantile
  of Student's t with ν degrees of freedom (``scipy.stats.t.ppf``); α = 0.05 gives the 95 %
  interval. With n < 2 there is no s, no interval and no test: the mean alone.

Comparing arm A with the reference arm B (the best), two-sided, at level α:

* **paired** t-test (``scipy.stats.ttest_rel``) when A and B share at least two seeds: the
  arms of one bopsweep study see the same weights' start and data order for a given seed, so
  d_i = a_i − b_i over the m shared seeds, t = d̄ / (s_d / √m), ν = m − 1. Seeds only one arm
  has are left out of the test (they still count in each arm's mean and interval).
* **Welch's** t-test (``scipy.stats.ttest_ind(equal_var=False)``) otherwise:
  t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b),
  ν = (s_a²/n_a + s_b²/n_b)² / ( (s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1) ).

A is *indistinguishable* from the best when p ≥ α: the test does not reject equal means. (That
is not evidence that they are equal: with few seeds the test sees only large differences.)
Where the test is undefined because A and B agree exactly (every difference zero, or both arms
constant and equal), scipy's p is NaN; the arms count as indistinguishable.

The reference arm of :func:`compare_to_best` is the arm of highest mean among those with at
least two values (a single lucky seed cannot be tested against), or among all arms when none
has two.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05  # the tests' level; the intervals are (1 − ALPHA)
MIN_N = 2  # values an arm needs for a standard deviation, an interval and a test

Test = Literal["paired", "welch"]


@dataclass(frozen=True)
class Summary:
    """An arm's values over seeds: n, mean, and (n ≥ 2) sample std and the interval's half
    width."""

    n: int
    mean: float
    std: float | None = None
    half_width: float | None = None
    confidence: float = 1 - ALPHA

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def summarize(values: Sequence[float], alpha: float = ALPHA) -> Summary:
    """Mean, sample std (ddof=1) and the Student-t (1 − α) interval of ``values``."""
    from scipy import stats

    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(xs) / n
    if n < MIN_N:
        return Summary(n, mean, confidence=1 - alpha)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, half, confidence=1 - alpha)


@dataclass(frozen=True)
class Comparison:
    """One arm against the reference: which test, over how many values, its two-sided p."""

    test: Test
    p_value: float  # NaN where the arms agree exactly (see the module's docstring)
    n: int  # pairs (paired) or values of both arms together (Welch)
    alpha: float = ALPHA

    @property
    def indistinguishable(self) -> bool:
        return math.isnan(self.p_value) or self.p_value >= self.alpha


def compare(
    a: Mapping[int, float], b: Mapping[int, float], alpha: float = ALPHA
) -> Comparison | None:
    """Test arm ``a`` against arm ``b`` (each: seed → value): paired over the seeds they share
    when they share at least two, Welch's otherwise; None when either has fewer than two
    values."""
    from scipy import stats

    if len(a) < MIN_N or len(b) < MIN_N:
        return None
    shared = sorted(set(a) & set(b))
    with warnings.catch_warnings():  # constant arms: scipy warns and returns inf or NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(shared) >= MIN_N:
            result = stats.ttest_rel([a[s] for s in shared], [b[s] for s in shared])
            return Comparison("paired", float(result.pvalue), len(shared), alpha)
        result = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    return Comparison("welch", float(result.pvalue), len(a) + len(b), alpha)


def best_arm(arms: Mapping[str, Mapping[int, float]]) -> str | None:
    """The reference: highest mean among arms with at least two values (among all when none
    has two); None when there are no arms. Ties go to the first."""
    testable = {k: v for k, v in arms.items() if len(v) >= MIN_N} or {
        k: v for k, v in arms.items() if v
    }
    if not testable:
        return None
    return max(testable, key=lambda k: math.fsum(testable[k].values()) / len(testable[k]))


def compare_to_best(
    arms: Mapping[str, Mapping[int, float]], alpha: float = ALPHA
) -> tuple[str | None, dict[str, Comparison | None]]:
    """The reference arm (:func:`best_arm`) and every other arm's test against it (None where
    no test is possible, and for the reference itself)."""
    best = best_arm(arms)
    if best is None:
        return None, {}
    return best, {
        k: None if k == best else compare(values, arms[best], alpha) for k, values in arms.items()
    }
