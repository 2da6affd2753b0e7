"""The figures of an Optuna search: history, parallel coordinates and parameter importances.

Drawn here from the trials rather than by ``optuna.visualization.matplotlib``, whose figures
follow another style (ggplot), show the objective on a 0–1 scale as "Objective Value", and fill
a param that a trial does not have (σ of a Bop trial) with a "None" category. These follow
:mod:`bopsweep.readers.plots.style`: accuracy in %, log axes for the log-distributed params (as the
trials' distributions say), and a param drawn only for the trials that have it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from matplotlib.ticker import MaxNLocator
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bopsweep.readers.plots.style import (
    TITLE,
    VAL_ACC_LABEL,
    assign_colours,
    fixed_description,
    legend,
    param_label,
    pyplot,
    variant_label,
)
from bopsweep.readers.report import importances
from bopsweep.store.trial_config import has_config, study_base, trial_config

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from optuna.trial import FrozenTrial

    from bopsweep.readers.plots.data import StudyData

# the axes of the parallel-coordinate figure, where they vary; the schedules' own parameters
# (rate, every, end) are left out: they would double the axes
PARALLEL_PARAMS = (
    "variant",
    "norm",
    "gamma_schedule",
    "sigma_schedule",
    "tau_schedule",
    "gamma",
    "sigma",
    "tau",
)
PAD = 0.04  # of an axis's height, above and below its extreme values


def optuna_figures(data: StudyData) -> dict[str, Figure]:
    """The history and parallel-coordinate figures once a trial is complete; the importances
    once Optuna can estimate them (:func:`bopsweep.readers.report.importances`, as ``status``)."""
    figures: dict[str, Figure] = {}
    if _complete(data):
        figures["optuna_history"] = history_figure(data)
        parallel = parallel_figure(data)
        if parallel is not None:
            figures["optuna_parallel"] = parallel
    importances = importance_figure(data)
    if importances is not None:
        figures["optuna_importances"] = importances
    return figures


def _complete(data: StudyData) -> list[FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE,)
    return [t for t in data.study.get_trials(deepcopy=False, states=states) if t.value is not None]


def _variant(t: FrozenTrial, base: dict[str, Any]) -> str:
    configured = has_config(t.user_attrs)
    return (
        variant_label(trial_config(t.user_attrs, base)) if configured else "unknown configuration"
    )


# --- history -------------------------------------------------------------------------------------
def history_figure(data: StudyData) -> Figure:
    """Each complete trial's value (final validation accuracy, %) against its number, coloured
    by optimizer variant, and the best so far; a pruned trial at its last reported epoch."""
    plt = pyplot()
    complete = sorted(_complete(data), key=lambda t: t.number)
    pruned = data.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    base = study_base(data.study.user_attrs)
    by_variant: dict[str, list[FrozenTrial]] = {}
    for t in complete:
        by_variant.setdefault(_variant(t, base), []).append(t)
    colours = assign_colours(data, sorted(by_variant))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    for variant in sorted(by_variant):
        trials = by_variant[variant]
        ax.scatter(
            [t.number for t in trials],
            [100 * t.value for t in trials],  # type: ignore[operator]  # complete: a value
            color=colours[variant],
            s=22,
            label=variant,
            zorder=3,
        )
    cut = [t for t in pruned if t.intermediate_values]
    if cut:
        ax.scatter(
            [t.number for t in cut],
            [100 * t.intermediate_values[max(t.intermediate_values)] for t in cut],
            marker="x",
            color="0.55",
            s=22,
            label="pruned (at its last epoch)",
            zorder=2,
        )
    best = [100 * t.value for t in complete]  # type: ignore[operator]
    ax.step(
        [t.number for t in complete],
        [max(best[: i + 1]) for i in range(len(best))],
        where="post",
        color="0.25",
        linewidth=1.2,
        label="best so far",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(VAL_ACC_LABEL)
    ax.grid(alpha=0.3)
    legend(ax)
    ax.set_title(
        f"{data.name}: final validation accuracy per trial (Optuna search, "
        f"{len(complete)} complete)\n{fixed_description(data, set())}",
        **TITLE,
    )
    return fig


# --- parallel coordinates -----------------------------------------------------------------------
@dataclass
class _Axis:
    """One vertical axis: a param's value per trial number, and where a value sits on it."""

    name: str
    values: dict[int, Any]
    scale: str  # "log", "linear" or "categorical"
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def partial(self, trials: list[FrozenTrial]) -> bool:
        """Whether some of ``trials`` do not have this param."""
        return len(self.values) < len(trials)

    def unit(self, value: Any) -> float:
        """The height of ``value`` in [PAD, 1 − PAD]."""
        if self.scale == "categorical":
            i = self.choices.index(value)
            return PAD + (1 - 2 * PAD) * (i / (len(self.choices) - 1))
        lo, hi, v = self.low, self.high, float(value)
        if self.scale == "log":
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(v)
        return PAD + (1 - 2 * PAD) * ((v - lo) / (hi - lo))

    def limits(self) -> tuple[float, float]:
        """The data limits whose ends are heights 0 and 1 (the twin axis shows values there)."""
        if self.scale == "categorical":
            return 0.0, 1.0
        lo, hi = self.low, self.high
        if self.scale == "log":
            lo, hi = math.log10(lo), math.log10(hi)
        span = (hi - lo) / (1 - 2 * PAD)
        ends = (lo - PAD * span, hi + PAD * span)
        return (10 ** ends[0], 10 ** ends[1]) if self.scale == "log" else ends


def _param_axis(name: str, trials: list[FrozenTrial]) -> _Axis | None:
    """The axis of a param that takes two values or more among ``trials``; None otherwise.
    Numeric axes span the search range (the distribution's bounds, widened to the values), on a
    log scale where the distribution is log."""
    having = [t for t in trials if name in t.params]
    values = {t.number: t.params[name] for t in having}
    if len(set(values.values())) < 2:
        return None
    dist = having[0].distributions[name]
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        low = min(dist.low, *values.values())
        high = max(dist.high, *values.values())
        log = dist.log and low > 0
        return _Axis(name, values, "log" if log else "linear", float(low), float(high))
    choices = dist.choices if isinstance(dist, CategoricalDistribution) else ()
    present = [c for c in choices if c in set(values.values())]
    present += sorted({v for v in values.values() if v not in present}, key=str)
    return _Axis(name, values, "categorical", choices=tuple(present))


def parallel_figure(data: StudyData) -> Figure | None:
    """Parallel coordinates of the complete trials: one axis per param that varies, and the
    value (final validation accuracy, %) on the right; each trial a line coloured by its value.

    A param that some trials do not have (σ is not a Bop hyperparameter; a schedule's kind
    exists only for the hyperparameters a variant uses) is drawn for the trials that have it:
    such axes come first, their label says for how many trials, and a trial's line starts at
    the first axis it has (or breaks around an axis it lacks). None: no param varies."""
    plt = pyplot()
    trials = sorted(_complete(data), key=lambda t: t.value)  # type: ignore[arg-type,return-value]
    found = [a for a in (_param_axis(n, trials) for n in PARALLEL_PARAMS) if a is not None]
    if not found:
        return None
    # axes set in every trial last, so a line never crosses an axis it has no value on
    axes = sorted(found, key=lambda a: len(a.values) == len(trials))
    accuracy = {t.number: 100 * t.value for t in trials}  # type: ignore[operator]
    lo, hi = min(accuracy.values()), max(accuracy.values())
    objective = _Axis("value", accuracy, "linear", lo - 0.5, hi + 0.5)
    columns = [*axes, objective]
    fig, host = plt.subplots(figsize=(1.35 * len(columns) + 2.0, 5.0), constrained_layout=True)
    host.set_xlim(0, len(columns) - 1)  # the first axis on the left edge, the value's on the right
    host.set_ylim(0, 1)
    host.set_yticks([])
    for spine in host.spines.values():
        spine.set_visible(False)
    cmap = plt.get_cmap("viridis")
    for t in trials:
        colour = cmap((accuracy[t.number] - lo) / (hi - lo) if hi > lo else 1.0)
        _draw_line(host, t.number, columns, colour)
    for x, axis in enumerate(columns):
        _draw_axis(host, x, axis, axis is objective)
    partial = [param_label(a.name) for a in axes if a.partial(trials)]
    host.set_xticks(
        range(len(columns)),
        [
            param_label(a.name)
            + (f"\n({len(a.values)} of {len(trials)} trials)" if a.partial(trials) else "")
            for a in axes
        ]
        + ["final"],  # the trial's value: its final validation accuracy
        fontsize=9,
    )
    host.tick_params(axis="x", length=0)
    host.set_title(
        f"{data.name}: {len(trials)} complete trials, coloured by validation accuracy"
        + (f"; {', '.join(partial)}: only for the trials that have it" if partial else "")
        + f"\n{fixed_description(data, set())}",
        **TITLE,
    )
    return fig


def _draw_line(host: Any, number: int, columns: list[_Axis], colour: Any) -> None:
    """Trial ``number``'s line across the parallel axes, broken around an axis it lacks."""
    run: list[tuple[int, float]] = []
    for x, axis in enumerate(columns):
        if number in axis.values:
            run.append((x, axis.unit(axis.values[number])))
        if number not in axis.values or x == len(columns) - 1:
            if len(run) > 1:
                host.plot(*zip(*run), color=colour, linewidth=1.3, alpha=0.8)
            run = []


def _draw_axis(host: Any, x: int, axis: _Axis, objective: bool) -> None:
    """Parallel axis number ``x``, with its ticks: on the left at ``x``, or the value's
    (``objective``) on the right edge."""
    twin = host.twinx()
    side = "right" if objective else "left"
    for name, spine in twin.spines.items():
        spine.set_visible(name == side)
    if not objective:
        twin.spines["left"].set_position(("data", x))
    twin.yaxis.set_ticks_position(side)
    twin.yaxis.set_label_position(side)
    twin.tick_params(labelsize=8)
    if axis.scale == "categorical":
        twin.set_ylim(0, 1)
        twin.set_yticks([axis.unit(c) for c in axis.choices], [str(c) for c in axis.choices])
    else:
        if axis.scale == "log":
            twin.set_yscale("log")
        twin.set_ylim(*axis.limits())
    if objective:
        twin.set_ylabel(VAL_ACC_LABEL)


# --- importances ---------------------------------------------------------------------------------
def importance_figure(data: StudyData) -> Figure | None:
    """The parameter importances ``bopsweep status`` prints, as bars; None while Optuna cannot
    estimate them. Params some complete trials do not have are left out by Optuna: named in the
    title."""
    found = importances(data.study)
    if not found.values:
        return None
    plt = pyplot()
    complete = _complete(data)
    everywhere = set.intersection(*(set(t.params) for t in complete))
    partial = sorted({p for t in complete for p in t.params} - everywhere)
    names = list(found.values)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(names) + 1.8), constrained_layout=True)
    bars = ax.barh(
        [param_label(n) for n in names],
        [found.values[n] for n in names],
        color=plt.get_cmap("tab10")(0),
        height=0.6,
    )
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_xlim(0, 1.15 * max(max(found.values.values()), 1e-9))
    evaluator = found.evaluator.removesuffix("ImportanceEvaluator")
    ax.set_xlabel(f"importance for validation accuracy (Optuna's {evaluator}, sum 1)")
    ax.grid(alpha=0.3, axis="x")
    # Optuna 5 assesses a param on the trials that have it; Optuna 4 leaves it out
    assessed = [param_label(p) for p in partial if p in found.values]
    left_out = [param_label(p) for p in partial if p not in found.values]
    ax.set_title(
        f"{data.name}: parameter importances ({found.complete} complete trials)"
        + (f"; {', '.join(assessed)}: from the trials that have them" if assessed else "")
        + (f"; left out, not set in every trial: {', '.join(left_out)}" if left_out else "")
        + f"\n{fixed_description(data, set())}",
        **TITLE,
    )
    return fig
