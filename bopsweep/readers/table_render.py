"""``bopsweep table``'s text: a :class:`~bopsweep.readers.table.Table` as Markdown (a caption, the
rows,
notes), LaTeX (a booktabs ``tabular``, the caption and notes as comments) or CSV (one row per
configuration, full precision, raw and Holm-adjusted p)."""

from __future__ import annotations

import csv
import io
import math

from bopsweep.defaults import TableFormat
from bopsweep.readers.stats import MIN_N, MIN_SEEDS_FOR_VERDICT, Summary
from bopsweep.readers.table import Row, Table


def render(table: Table, format: TableFormat) -> str:
    """The table as Markdown, LaTeX or CSV."""
    if format == TableFormat.CSV:
        return _csv(table)
    return _latex(table) if format == TableFormat.LATEX else _markdown(table)


def _percent(table: Table) -> int:
    return round(100 * (1 - table.alpha))


def caption(table: Table) -> str:
    """What the table shows, which baseline and how it was chosen, and what the tests did."""
    base, level = table.baseline, _percent(table)
    return (
        f"Table 1, study {table.study}: final and best-epoch validation accuracy and final "
        f"training accuracy (%) over seeds, mean ± std (sample, ddof=1), with {level} % "
        f"confidence intervals (Student t). Baseline: {base.arm.label} ({table.chosen}). "
        + _comparisons(table)
    )


def _comparisons(table: Table) -> str:
    base, level = table.baseline, _percent(table)
    if len(base.arm.values(table.metric)) < MIN_N:
        return "The baseline has fewer than two seeds: no interval of a difference, no test."
    if table.tests == 0:
        return "No configuration has a t-test against the baseline (see the notes)."
    return (
        f"Δ: each configuration minus the baseline in {table.metric.value} accuracy "
        f"(percentage points) with its {level} % CI; p: the t-test's, adjusted for the "
        f"{table.tests} tests by Holm's method; verdict at α = {table.alpha:g}, none where the "
        f"configuration or the baseline has fewer than {MIN_SEEDS_FOR_VERDICT} seeds."
    )


NOTES = (
    "Test: paired t-test over the seeds both configurations share (scipy.stats.ttest_rel), "
    "Welch's t-test (scipy.stats.ttest_ind, equal_var=False) where they share fewer than two; "
    "Δ's interval is that test's. p is Holm's step-down adjustment over every configuration "
    "tested against the baseline (the CSV keeps the raw p too). better / worse: adjusted "
    "p < α, by the sign of Δ; indistinguishable: the test does not separate the configuration "
    "from the baseline (with few seeds it sees only large differences). "
    f"n < {MIN_SEEDS_FOR_VERDICT}: the test is shown, no verdict is drawn from it. "
    "No variance: Δ is the same for every seed (or both configurations are constant), so "
    "there is no test (a zero-width interval would call any difference certain); equal "
    "everywhere reads indistinguishable. n=1: the mean alone, no interval and no test. "
    "train: the last epoch's training accuracy; — where the trials do not record it."
)
HEADER = ("configuration", "n", "final (%)", "final {level} % CI", "best epoch (%)",
          "best epoch {level} % CI", "train (%)", "Δ {metric} vs baseline (pp)",
          "Δ {level} % CI", "test", "p (Holm)", "vs baseline")  # fmt: skip
VERDICT = {
    "baseline": "baseline",
    "better": "better",
    "worse": "worse",
    "indistinguishable": "indistinguishable",
    "few seeds": f"n < {MIN_SEEDS_FOR_VERDICT}: no verdict",
    "no variance": "no variance: no test",
}


def _header(table: Table) -> list[str]:
    return [h.format(level=_percent(table), metric=table.metric.value) for h in HEADER]


def _mean(s: Summary | None, n: int, pm: str, dash: str) -> str:
    """mean ± std; n=k where the summary has another count than the arm (train)."""
    if s is None:
        return dash
    if s.std is None:
        return f"{s.mean:.2f} (n=1)"
    return f"{s.mean:.2f}{pm}{s.std:.2f}" + ("" if s.n == n else f" (n={s.n})")


def _cells(row: Row, pm: str, interval: str, dash: str) -> list[str]:
    def ci(s: Summary) -> str:
        return dash if s.low is None else interval.format(s.low, s.high)

    n, o = row.final.n, row.outcome
    c = o.comparison
    diff = dash if o.diff is None or row.baseline else f"{o.diff:+.2f}"
    diff_ci = dash if c is None or not c.tested else interval.format(c.low, c.high)
    test = dash if c is None else f"paired t ({c.n} seeds)" if c.test == "paired" else "Welch t"
    p = _p(o.p_holm) if o.p_holm is not None else dash
    if c is not None and not c.tested:
        p = "n/a (equal)" if c.equal else "n/a (no variance)"
    return [row.arm.label, str(n), _mean(row.final, n, pm, dash), ci(row.final),
            _mean(row.best, n, pm, dash), ci(row.best), _mean(row.train, n, pm, dash), diff,
            diff_ci, test, p, VERDICT.get(o.verdict, dash)]  # fmt: skip


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    header = _header(table)
    lines = [caption(table), "", line(header), "|" + "|".join(["---"] * len(header)) + "|"]
    lines += [line(_cells(r, " ± ", "[{:.2f}, {:.2f}]", "—")) for r in table.rows]
    notes = [NOTES, *([f"**Provenance.** {table.provenance}"] if table.provenance else [])]
    return "\n".join([*lines, "", "\n\n".join(notes)]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "γ": r"$\gamma$", "σ": r"$\sigma$", "τ": r"$\tau$", "α": r"$\alpha$", "±": r"$\pm$",
        "≥": r"$\geq$", "—": "---", "Δ": r"$\Delta$", "<": r"$<$"}  # fmt: skip


def tex(text: str) -> str:
    """Plain text as LaTeX: special characters escaped, Greek letters as math."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def _latex(table: Table) -> str:
    header = [tex(h) for h in _header(table)]
    header[1] = "$n$"
    header[-2] = "$p$ (Holm)"
    body = []
    for row in table.rows:
        cells = _cells(row, " ± ", "[{:.2f}, {:.2f}]", "—")
        body.append(" & ".join(tex(c) for c in cells) + r" \\")
    notes = (caption(table), NOTES, *([table.provenance] if table.provenance else []))
    comments = [f"% {line}" for line in (*notes, r"Needs \usepackage{booktabs}.")]
    columns = "lr" + "l" * (len(header) - 2)
    return (
        "\n".join(
            [
                *comments,
                rf"\begin{{tabular}}{{{columns}}}",
                r"\toprule",
                " & ".join(header) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
            ]
        )
        + "\n"
    )


CSV_COLUMNS = ("configuration", "n", "seeds", "trials",
               "final_mean", "final_std", "final_ci_low", "final_ci_high", "final_ci_half_width",
               "best_mean", "best_std", "best_ci_low", "best_ci_high", "best_ci_half_width",
               "train_n", "train_mean", "train_std", "metric", "baseline", "baseline_chosen",
               "test", "n_test", "diff_mean", "diff_ci_low", "diff_ci_high", "p_value", "p_holm",
               "verdict")  # fmt: skip


def _number(x: float | None) -> str:
    return "" if x is None or math.isnan(x) else repr(float(x))


def _csv_comparison(row: Row) -> list[str]:
    """test, n_test, diff_mean, diff_ci_low, diff_ci_high, p_value, p_holm, verdict."""
    o, c = row.outcome, row.outcome.comparison
    if c is None:
        return ["", "", _number(o.diff), "", "", "", "", o.verdict]
    low, high = (c.low, c.high) if c.tested else (None, None)  # no variance: no interval
    return [c.test, str(c.n), _number(c.diff), _number(low), _number(high),
            _number(c.p_value), _number(o.p_holm), o.verdict]  # fmt: skip


def _csv(table: Table) -> str:
    def stats(s: Summary) -> list[str]:
        return [_number(v) for v in (s.mean, s.std, s.low, s.high, s.half_width)]

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in table.rows:
        train = ["0", "", ""] if r.train is None else [str(r.train.n), _number(r.train.mean),
                                                       _number(r.train.std)]  # fmt: skip
        writer.writerow(
            [r.arm.label, r.final.n, " ".join(map(str, r.arm.final)),
             " ".join(map(str, r.arm.trials.values())), *stats(r.final), *stats(r.best),
             *train, table.metric.value, str(r.baseline).lower(), table.chosen,
             *_csv_comparison(r)]
        )  # fmt: skip
    return out.getvalue()
