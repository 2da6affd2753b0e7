"""Statistics over seeds: an arm's mean, spread and confidence interval, and how an arm differs
from a declared baseline arm. Pure numbers (scipy and the standard library), no study, no output.

For the values x_1 … x_n of one arm (one per seed):

* mean  x̄ = Σ x_i / n
* sample standard deviation  s = √( Σ (x_i − x̄)² / (n − 1) )   (ddof = 1)
* confidence interval  x̄ ± h,  h = t(1 − α/2, n − 1) · s / √n, with t(q, ν) the q-quantile
  of Student's t with ν degrees of freedom (``scipy.stats.t.ppf``); α = 0.05 gives the 95 %
  interval. With n < 2 there is no s, no interval and no test: the mean alone.

Comparing arm A with the baseline arm B, two-sided, at level α; the difference is A − B:

* **paired** when A and B share at least two seeds: the arms of one bopsweep study see the same
  weights' start and data order for a given seed, so d_i = a_i − b_i over the m shared seeds,
  difference d̄ ± t(1 − α/2, m − 1) · s_d / √m, t-test ``scipy.stats.ttest_rel``
  (t = d̄ / (s_d / √m), ν = m − 1). Seeds only one arm has are left out of the test (they
  still count in each arm's mean and interval).
* **Welch** otherwise: difference ā − b̄ ± t(1 − α/2, ν) · se, se = √(s_a²/n_a + s_b²/n_b),
  ν = se⁴ / ( (s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1) ), t-test
  ``scipy.stats.ttest_ind(equal_var=False)``.

Where the difference has no variance (se = 0: a paired difference that is the same for every
seed, or two constant arms) there is no test: a t of ±∞ and p = 0 from a zero-width interval
would call two arms different on two identical-looking runs. An exactly zero such difference
(the arms agree everywhere) is *indistinguishable*; a non-zero one is *no variance* and gets
no verdict. "Zero" allows for float rounding: se below 10⁻¹² of the values' magnitude.

The arms tested against the baseline are one family of tests: their p-values are adjusted
by **Holm**'s step-down method (:func:`holm`), and the verdict reads the adjusted p. A pow10
study compares over a hundred arms; without the adjustment about one in twenty equal arms
would be called different by chance. An arm is *better* or *worse* (by the sign of the
difference) when its adjusted p < α, *indistinguishable* otherwise (that is not evidence that
they are equal: with few seeds the test sees only large differences). No verdict where the
arm or the baseline has fewer than :data:`MIN_SEEDS_FOR_VERDICT` seeds: a t-test on two seeds
(one degree of freedom) is shown, but is too fragile to decide on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

ALPHA = 0.05  # the tests' level; the intervals are (1 − ALPHA)
MIN_N = 2  # values an arm needs for a standard deviation, an interval and a test
MIN_SEEDS_FOR_VERDICT = 3  # seeds the arm and the baseline each need for better/worse
ROUNDING = 1e-12  # a standard error below this share of the values' magnitude is zero

Test = Literal["paired", "welch"]
Verdict = Literal[
    "baseline", "better", "worse", "indistinguishable", "few seeds", "no variance", "no test"
]


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
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(xs) / n
    if n < MIN_N:
        return Summary(n, mean, confidence=1 - alpha)
    std = _std(xs)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, half, confidence=1 - alpha)


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _std(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof = 1)."""
    mean = _mean(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


@dataclass(frozen=True)
class Comparison:
    """One arm against the baseline: which test over how many values, the difference arm −
    baseline with the half width of its (1 − α) interval, and the raw two-sided p (NaN where
    the difference has no variance: no test, see the module's docstring)."""

    test: Test
    p_value: float
    n: int  # pairs (paired) or values of both arms together (Welch)
    diff: float
    half_width: float  # 0.0 where the difference has no variance
    alpha: float = ALPHA

    @property
    def low(self) -> float:
        return self.diff - self.half_width

    @property
    def high(self) -> float:
        return self.diff + self.half_width

    @property
    def tested(self) -> bool:
        """A t-test was made: the difference has variance (one of the family Holm adjusts)."""
        return not math.isnan(self.p_value)

    @property
    def equal(self) -> bool:
        """No variance and no difference: the arms agree exactly."""
        return not self.tested and self.diff == 0.0


def compare(
    a: Mapping[int, float], b: Mapping[int, float], alpha: float = ALPHA
) -> Comparison | None:
    """Arm ``a`` against the baseline ``b`` (each: seed → value): paired over the seeds they
    share when they share at least two, Welch's otherwise; None when either has fewer than two
    values."""
    if len(a) < MIN_N or len(b) < MIN_N:
        return None
    shared = sorted(set(a) & set(b))
    if len(shared) >= MIN_N:
        return _paired([a[s] for s in shared], [b[s] for s in shared], alpha)
    return _welch(list(a.values()), list(b.values()), alpha)


def _paired(a: list[float], b: list[float], alpha: float) -> Comparison:
    """Paired t over equally long, seed-aligned ``a`` and ``b``: interval of the mean
    difference, ν = m − 1."""
    m, d = len(a), [x - y for x, y in zip(a, b)]
    se, scale = _std(d) / math.sqrt(m), _scale(a + b)
    if se <= ROUNDING * scale:
        return _no_variance("paired", m, _mean(d), scale, alpha)
    p = float(stats.ttest_rel(a, b).pvalue)
    half = float(stats.t.ppf(1 - alpha / 2, m - 1)) * se
    return Comparison("paired", p, m, _mean(d), half, alpha)


def _welch(a: list[float], b: list[float], alpha: float) -> Comparison:
    """Welch's t: interval of ā − b̄ with the Welch–Satterthwaite degrees of freedom."""
    va, vb = _std(a) ** 2 / len(a), _std(b) ** 2 / len(b)
    se, diff, n, scale = math.sqrt(va + vb), _mean(a) - _mean(b), len(a) + len(b), _scale(a + b)
    if se <= ROUNDING * scale:
        return _no_variance("welch", n, diff, scale, alpha)
    nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    half = float(stats.t.ppf(1 - alpha / 2, nu)) * se
    return Comparison("welch", p, n, diff, half, alpha)


def _scale(values: list[float]) -> float:
    """The values' magnitude: what float rounding of a difference is measured against."""
    return max(1.0, max(abs(v) for v in values))


def _no_variance(test: Test, n: int, diff: float, scale: float, alpha: float) -> Comparison:
    """No test: p NaN, a zero-width interval; a difference within rounding of 0 is 0."""
    zero = abs(diff) <= ROUNDING * scale
    return Comparison(test, math.nan, n, 0.0 if zero else diff, 0.0, alpha)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of one family of p-values, in the given order: with the m
    p-values sorted ascending, p₍ᵢ₎ becomes max over j ≤ i of min(1, (m − j + 1) · p₍ⱼ₎).
    Rejecting where the adjusted p < α keeps the chance of any false rejection in the family
    below α, whatever the tests' dependence (Holm 1979)."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Outcome:
    """An arm against the baseline: its comparison (None: fewer than two values on a side),
    the difference of means where there is no comparison, the Holm-adjusted p, the verdict."""

    verdict: Verdict
    comparison: Comparison | None = None
    diff: float | None = None  # arm − baseline: the comparison's, else the means' difference
    p_holm: float | None = None


def compare_to_baseline(
    arms: Mapping[str, Mapping[int, float]],
    baseline: str,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS_FOR_VERDICT,
) -> dict[str, Outcome]:
    """Every arm against ``baseline`` (a key of ``arms``): tested, the family's p adjusted
    by Holm, a verdict on the adjusted p; the baseline's own outcome is ``"baseline"``."""
    base = arms[baseline]
    tests = {k: None if k == baseline else compare(v, base, alpha) for k, v in arms.items()}
    family = [k for k, c in tests.items() if c is not None and c.tested]
    adjusted = dict(zip(family, holm([tests[k].p_value for k in family])))  # type: ignore[union-attr]
    outcomes = {}
    for k, c in tests.items():
        if k == baseline:
            outcomes[k] = Outcome("baseline")
            continue
        # the seeds the test itself used: the pairs of a paired test (two arms of three
        # seeds may share two), the smaller arm of Welch's
        seeds = c.n if c is not None and c.test == "paired" else min(len(arms[k]), len(base))
        p = adjusted.get(k)
        diff = c.diff if c is not None else _mean_difference(arms[k], base)
        outcomes[k] = Outcome(_verdict(c, p, seeds, alpha, min_seeds), c, diff, p)
    return outcomes


def _mean_difference(a: Mapping[int, float], b: Mapping[int, float]) -> float | None:
    return _mean(list(a.values())) - _mean(list(b.values())) if a and b else None


def _verdict(
    c: Comparison | None, p_holm: float | None, seeds: int, alpha: float, min_seeds: int
) -> Verdict:
    """better / worse on an adjusted p < α, else indistinguishable; none below ``min_seeds``
    seeds on either side, none on a non-zero difference without variance."""
    if c is None:
        return "no test"
    if seeds < min_seeds:
        return "few seeds"
    if c.equal:
        return "indistinguishable"
    if p_holm is None:
        return "no variance"
    if p_holm < alpha:
        return "better" if c.diff > 0 else "worse"
    return "indistinguishable"
