"""Table 1 with error bars: a study's configurations, their validation accuracy over seeds and
which of them the data cannot tell apart from the best, as Markdown, LaTeX or CSV.

A *configuration* is a trial's configuration without its seed. Its values are those of the
study's COMPLETE trials, one per (configuration, seed): where a configuration and seed were
completed more than once, the latest counts. Final accuracy is the trial's value (last epoch),
best accuracy its best epoch's; both in %. The statistics are :mod:`bopsweep.stats`'.

:func:`group_arms` reads the trials, :func:`build_table` computes, :func:`render` writes text;
the command line (``bopsweep table``) only chains them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bopsweep.defaults import TableFormat, TableMetric
from bopsweep.stats import ALPHA, MIN_N, Comparison, Summary, compare_to_best, summarize

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

_SEED = re.compile(r"(?:^|\s+)seed=\S+")


@dataclass
class Arm:
    """One configuration: its label and, per seed, final and best validation accuracy (%)."""

    label: str
    key: str  # the configuration without seed, as JSON
    final: dict[int, float] = field(default_factory=dict)
    best: dict[int, float] = field(default_factory=dict)
    trials: dict[int, int] = field(default_factory=dict)  # seed → the trial number counted

    def values(self, metric: TableMetric) -> dict[int, float]:
        return self.final if metric == TableMetric.FINAL else self.best


def arm_label(label: str) -> str:
    """A trial's label without its seed part (``"tau=1e-06 seed=3"`` → ``"tau=1e-06"``)."""
    return _SEED.sub("", label).strip()


def point_key(config: dict[str, Any]) -> str:
    """What a configuration computes, seed left out: its seeds share this key."""
    from bopsweep.studies.plan import LOCAL_FIELDS

    return json.dumps(
        {k: v for k, v in config.items() if k != "seed" and k not in LOCAL_FIELDS}, sort_keys=True
    )


def group_arms(trials: Iterable[FrozenTrial], base: dict[str, Any]) -> list[Arm]:
    """The COMPLETE trials grouped by configuration without seed, in the order of each
    configuration's first counted trial; per (configuration, seed) the latest completed one.
    ``base``: the study's base configuration, which its trials store their difference from
    (:func:`bopsweep.store.trial_config.study_base`)."""
    from bopsweep.store.trial_config import has_config, trial_config

    latest: dict[tuple[str, int], FrozenTrial] = {}
    for t in trials:
        if t.state.name != "COMPLETE" or t.value is None or not has_config(t.user_attrs):
            continue
        config = trial_config(t.user_attrs, base)
        slot = (point_key(config), int(config.get("seed", 0)))
        if slot not in latest or _when(t) > _when(latest[slot]):
            latest[slot] = t
    arms: dict[str, Arm] = {}
    for (key, seed), t in sorted(latest.items(), key=lambda kv: (kv[1].number, kv[0][1])):
        if key not in arms:
            label = arm_label(str(t.user_attrs.get("label") or "")) or "base point"
            arms[key] = Arm(label, key)
        arm, final = arms[key], float(t.value or 0.0)  # COMPLETE with a value: kept above
        arm.final[seed] = 100 * final
        # the driver records the best epoch of every complete trial; a trial made by other
        # means without it counts its final accuracy as its best
        arm.best[seed] = 100 * float(t.user_attrs.get("best_val_acc", final))
        arm.trials[seed] = t.number
    _disambiguate(list(arms.values()))
    for arm in arms.values():
        order = sorted(arm.final)
        arm.final = {s: arm.final[s] for s in order}
        arm.best = {s: arm.best[s] for s in order}
        arm.trials = {s: arm.trials[s] for s in order}
    return list(arms.values())


def _when(t: FrozenTrial) -> tuple[float, int]:
    done = t.datetime_complete
    return (done.timestamp() if done is not None else -math.inf, t.number)


def _disambiguate(arms: list[Arm]) -> None:
    """Two configurations with one label (e.g. sampled values that round alike) get a short
    id of their configuration appended."""
    counts: dict[str, int] = {}
    for arm in arms:
        counts[arm.label] = counts.get(arm.label, 0) + 1
    for arm in arms:
        if counts[arm.label] > 1:
            arm.label += f" [{hashlib.sha1(arm.key.encode()).hexdigest()[:6]}]"


@dataclass(frozen=True)
class Row:
    arm: Arm
    final: Summary
    best: Summary
    comparison: Comparison | None  # against the reference, on the table's metric
    reference: bool  # the best configuration, the one the others are tested against


@dataclass(frozen=True)
class Table:
    study: str
    metric: TableMetric
    rows: list[Row]
    alpha: float = ALPHA

    @property
    def reference(self) -> Row | None:
        return next((r for r in self.rows if r.reference), None)


def build_table(
    study: str, arms: list[Arm], metric: TableMetric = TableMetric.FINAL, alpha: float = ALPHA
) -> Table:
    """Each arm's summaries, and its test against the best arm on ``metric``."""
    by_label = {arm.label: arm.values(metric) for arm in arms}
    best, tests = compare_to_best(by_label, alpha)
    rows = [
        Row(
            arm,
            summarize(list(arm.final.values()), alpha),
            summarize(list(arm.best.values()), alpha),
            tests.get(arm.label),
            arm.label == best,
        )
        for arm in arms
    ]
    return Table(study, metric, rows, alpha)


# --- text ---------------------------------------------------------------------------------------
def render(table: Table, format: TableFormat) -> str:
    """The table as Markdown (with a caption and notes), LaTeX (a booktabs ``tabular``, the
    caption as comments) or CSV (one row per configuration, full precision)."""
    if format == TableFormat.CSV:
        return _csv(table)
    return _latex(table) if format == TableFormat.LATEX else _markdown(table)


def _percent(table: Table) -> int:
    return round(100 * (1 - table.alpha))


def caption(table: Table) -> str:
    ref = table.reference
    level = _percent(table)
    against = (
        f"each configuration is tested against the best configuration ({ref.arm.label}) on "
        f"{table.metric.value} accuracy at α = {table.alpha:g}"
        if ref is not None and ref.final.n >= MIN_N
        else "no configuration has two seeds: no interval, no test"
    )
    return (
        f"Table 1, study {table.study}: final and best-epoch validation accuracy (%) over "
        f"seeds, mean ± std (sample, ddof=1) and {level} % confidence interval (Student t); "
        f"{against}."
    )


NOTES = (
    "Test: paired t-test over the seeds both configurations share (scipy.stats.ttest_rel), "
    "Welch's t-test (scipy.stats.ttest_ind, equal_var=False) where they share fewer than two. "
    "Indistinguishable: p ≥ α, the test does not separate the configuration from the best. "
    "n=1: the mean alone, no interval and no test."
)
HEADER = ("configuration", "n", "final (%)", "final {level} % CI", "best epoch (%)",
          "best epoch {level} % CI", "vs best configuration ({metric})", "test", "p")  # fmt: skip


def _header(table: Table) -> list[str]:
    return [h.format(level=_percent(table), metric=table.metric.value) for h in HEADER]


def _cells(row: Row, pm: str, interval: str, dash: str) -> list[str]:
    def mean(s: Summary) -> str:
        return f"{s.mean:.2f} (n=1)" if s.std is None else f"{s.mean:.2f}{pm}{s.std:.2f}"

    def ci(s: Summary) -> str:
        return dash if s.low is None else interval.format(s.low, s.high)

    c = row.comparison
    if row.reference:
        verdict, test, p = "best", dash, dash
    elif c is None:
        verdict, test, p = dash, dash, dash
    else:
        verdict = "indistinguishable" if c.indistinguishable else "worse"
        test = f"paired t ({c.n} seeds)" if c.test == "paired" else "Welch t"
        p = _p(c.p_value)
    return [row.arm.label, str(row.final.n), mean(row.final), ci(row.final), mean(row.best),
            ci(row.best), verdict, test, p]  # fmt: skip


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a (equal)"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    header = _header(table)
    lines = [caption(table), "", line(header), "|" + "|".join(["---"] * len(header)) + "|"]
    lines += [line(_cells(r, " ± ", "[{:.2f}, {:.2f}]", "—")) for r in table.rows]
    return "\n".join([*lines, "", NOTES]) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "γ": r"$\gamma$", "σ": r"$\sigma$", "τ": r"$\tau$", "α": r"$\alpha$", "±": r"$\pm$",
        "≥": r"$\geq$", "—": "---"}  # fmt: skip


def tex(text: str) -> str:
    """Plain text as LaTeX: special characters escaped, Greek letters as math."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def _latex(table: Table) -> str:
    header = [tex(h) for h in _header(table)]
    header[1] = "$n$"
    header[-1] = "$p$"
    body = []
    for row in table.rows:
        cells = _cells(row, " ± ", "[{:.2f}, {:.2f}]", "—")
        body.append(" & ".join(tex(c) for c in cells) + r" \\")
    comments = [f"% {line}" for line in (caption(table), NOTES, r"Needs \usepackage{booktabs}.")]
    return (
        "\n".join(
            [
                *comments,
                r"\begin{tabular}{lrlllllll}",
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
               "metric", "reference", "test", "n_test", "p_value", "indistinguishable")  # fmt: skip


def _csv(table: Table) -> str:
    def number(x: float | None) -> str:
        return "" if x is None else repr(float(x))

    def stats(s: Summary) -> list[str]:
        return [number(v) for v in (s.mean, s.std, s.low, s.high, s.half_width)]

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in table.rows:
        c = r.comparison
        test = (
            [c.test, str(c.n), number(c.p_value), str(c.indistinguishable).lower()]
            if c
            else ["", "", "", ""]
        )
        writer.writerow(
            [r.arm.label, r.final.n, " ".join(map(str, r.arm.final)),
             " ".join(map(str, r.arm.trials.values())), *stats(r.final), *stats(r.best),
             table.metric.value, str(r.reference).lower(), *test]
        )  # fmt: skip
    return out.getvalue()
