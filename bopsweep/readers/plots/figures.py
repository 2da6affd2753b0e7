"""The paper's figures of a study's runs: ablation (Fig. 3), summary, comparison (Fig. 5/6),
schedule (Fig. 4) and π_t.

Every figure function takes a :class:`~bopsweep.readers.plots.data.StudyData` and returns a
matplotlib
figure, so tests can check the data drawn. Conventions: :mod:`bopsweep.readers.plots.style`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Literal

from bopsweep.metric_keys import PI, TRAIN_ACC, VAL_ACC, layer_column
from bopsweep.readers.plots.data import (
    Run,
    StudyData,
    arm_label,
    group_by_point,
    points_along,
    seed_band,
    seed_bands,
)
from bopsweep.readers.plots.style import (
    SUPTITLE,
    SYMBOLS,
    TITLE,
    VAL_ACC_LABEL,
    accuracy_axes,
    arm_panels,
    assign_colours,
    draw_band,
    draw_bands,
    fixed_description,
    fmt_value,
    held_note,
    legend,
    pi_axes,
    pyplot,
    seeds_note,
    variant_label,
)
from bopsweep.readers.stats import summarize
from bopsweep.studies.designs import ScheduleDesign

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def ablation_figure(data: StudyData, param: str) -> Figure:
    """Fig. 3: accuracy against epoch per value of ``param`` (validation solid, training dashed)
    and, below, π_t against step for the same values."""
    plt = pyplot()
    by_value = points_along(data, param)
    keys = {v: f"{param}={fmt_value(v)}" for v in by_value}
    colours = assign_colours(data, list(keys.values()), {keys[v]: v for v in by_value})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 8), constrained_layout=True)
    colour = {v: colours[keys[v]] for v in by_value}
    label = {v: f"{SYMBOLS.get(param, param)} = {fmt_value(v)}" for v in by_value}
    val, train = (seed_bands(by_value, "epoch", y) for y in (VAL_ACC, TRAIN_ACC))
    draw_bands(top, val, colour, label, "-", 100)
    draw_bands(top, train, colour, {}, "--", 100)
    draw_bands(bottom, seed_bands(by_value, "step", PI, "steps"), colour, label)
    accuracy_axes(top)
    top.set_title(
        "validation (solid) and training (dashed) accuracy" + seeds_note(by_value), **TITLE
    )
    legend(top)
    pi_axes(bottom)
    bottom.set_title("flip metric π_t (network-wide)", **TITLE)
    fig.suptitle(
        f"{data.name}: ablation of {SYMBOLS.get(param, param)}\n"
        f"{fixed_description(data, {param})}{held_note(data, param)}",
        **SUPTITLE,
    )
    return fig


def summary_figure(data: StudyData, param: str) -> Figure:
    """Final (solid) and best (dotted) validation accuracy against ``param`` on a log axis, one
    line per optimizer variant. Where a value has several seeds, the point is their mean and the
    error bar its 95 % confidence interval, mean ± t(0.975, n − 1)·s/√n (Student t, sample std;
    :func:`bopsweep.readers.stats.summarize`, the intervals of ``bopsweep table``); a single seed
    has
    none."""
    plt = pyplot()
    by_value = points_along(data, param)
    lines: dict[str, dict[str, list[tuple[float, list[float], list[float]]]]] = defaultdict(
        lambda: {"pts": []}
    )
    for value, runs in by_value.items():
        per_variant: dict[str, list[Run]] = defaultdict(list)
        for r in runs:
            per_variant[variant_label(r.config)].append(r)
        for variant, vruns in per_variant.items():
            finals = [100 * r.epochs[VAL_ACC].iloc[-1] for r in vruns]
            bests = [100 * r.best_val_acc() for r in vruns]
            lines[variant]["pts"].append((value, finals, bests))
    colours = assign_colours(data, list(lines))
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for variant, line in lines.items():
        xs = [p[0] for p in line["pts"]]
        series: tuple[tuple[Literal[1, 2], str, str], ...] = ((1, "-o", "final"), (2, ":s", "best"))
        for idx, style, what in series:
            summaries = [summarize(p[idx]) for p in line["pts"]]
            ax.errorbar(
                xs,
                [s.mean for s in summaries],
                yerr=[s.half_width or 0.0 for s in summaries],
                fmt=style,
                color=colours[variant],
                capsize=3,
                label=f"{variant}, {what}",
                markersize=4,
            )
    if all(isinstance(v, (int, float)) and v > 0 for v in by_value):
        ax.set_xscale("log")
    ax.set_xlabel(f"{SYMBOLS.get(param, param)} ({param})")
    ax.set_ylabel(VAL_ACC_LABEL)
    # an accuracy lies in 0–100 %; a wide interval (few seeds) must not squash the points
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))
    ax.grid(alpha=0.3)
    legend(ax)
    ax.set_title(
        f"{data.name}: final and best validation accuracy against "
        f"{SYMBOLS.get(param, param)}\n{fixed_description(data, {param})}"
        + held_note(data, param)
        + (
            "; error bars: 95 % CI over seeds (Student t)"
            if any(len(p[1]) > 1 for line in lines.values() for p in line["pts"])
            else ""
        ),
        **TITLE,
    )
    return fig


def comparison_figure(data: StudyData, runs: list[Run] | None = None, title: str = "") -> Figure:
    """Fig. 5/6: training (dashed) and validation (solid) accuracy against epoch per arm."""
    plt = pyplot()
    groups = group_by_point(runs if runs is not None else data.runs)
    labels = {k: arm_label(g[0]) for k, g in groups.items()}
    colours = assign_colours(data, list(labels.values()))
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    colour = {k: colours[labels[k]] for k in groups}
    val, train = (seed_bands(groups, "epoch", y) for y in (VAL_ACC, TRAIN_ACC))
    draw_bands(ax, val, colour, labels, "-", 100)
    draw_bands(ax, train, colour, {}, "--", 100)
    accuracy_axes(ax)
    legend(ax)
    ax.set_title(
        title
        or f"{data.name}: validation (solid) and training (dashed) accuracy"
        f"{seeds_note(groups)}\n{fixed_description(data, set())}",
        **TITLE,
    )
    return fig


def schedule_figure(data: StudyData) -> Figure:
    """Fig. 4: the increasing, decreasing and constant arms' accuracy, and a small panel of the
    scheduled hyperparameter's value against epoch."""
    plt = pyplot()
    design = data.design
    assert isinstance(design, ScheduleDesign), f"{data.name} is a {design.kind} study"
    param = design.schedule_param
    groups = group_by_point(data.runs)
    labels = {k: arm_label(g[0]) for k, g in groups.items()}
    # colour by direction, line style by variant (solid unbiased, dash-dot biased), as Fig. 4
    colours = dict(zip(("constant", "increasing", "decreasing"), ("0.35", "tab:red", "tab:blue")))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 7.5), constrained_layout=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for key, group in groups.items():
        label = labels[key]
        colour = colours.get(label.rsplit(" ", 1)[-1], "tab:green")
        style = "-" if "unbiased" in label else "-."
        draw_band(top, seed_band(group, "epoch", VAL_ACC), "epoch", colour, label, style, 100)
        values = group[0].epochs[["epoch", param]]
        bottom.plot(values["epoch"], values[param], style, color=colour, label=label)
    accuracy_axes(top)
    top.set_title(f"validation accuracy{seeds_note(groups)}", **TITLE)
    legend(top)
    bottom.set_yscale("log")
    bottom.set_xlabel("epoch")
    bottom.set_ylabel(f"{SYMBOLS[param]} in force")
    bottom.grid(alpha=0.3)
    factor = fmt_value(design.factor)
    if design.schedule_kind == "exponential":
        how = f"×{factor} or ÷{factor} every {fmt_value(design.every)} epochs"
    else:
        how = f"polynomial to ×{factor} or ÷{factor}"
    fig.suptitle(
        f"{data.name}: {SYMBOLS[param]} scheduled ({how}) against constant\n"
        f"{fixed_description(data, {param, 'unbiased'})}",
        **SUPTITLE,
    )
    return fig


def pi_figure(data: StudyData, layers: list[str] | None = None) -> Figure:
    """π_t against step, network-wide and for each of ``layers``; the right axis reads π as
    the flip fraction."""
    fig, axes, panels, groups, labels, colour = arm_panels(data, layers, 1, 7.5)
    for ax, panel in zip(axes[:, 0], panels):
        column = PI if panel == "network" else layer_column(PI, panel)
        draw_bands(ax, seed_bands(groups, "step", column, "steps"), colour, labels)
        pi_axes(ax)
        ax.set_title("network-wide" if panel == "network" else f"layer {panel}", **TITLE)
    legend(axes[0, 0])
    fig.suptitle(
        f"{data.name}: flip metric π_t{seeds_note(groups)}\n{fixed_description(data, set())}",
        **SUPTITLE,
    )
    return fig
