"""How the figures look: matplotlib on Agg, colours, axes, bands, legends and titles.

Conventions: accuracy in %, validation solid and training dashed; π_t (natural log of the flip
fraction plus e⁻⁹) against the optimizer step; one colour per configuration, the same in every
figure of a study; several seeds of a configuration are drawn as their mean and a band from
their minimum to their maximum.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.ticker import MaxNLocator

from bopsweep.defaults import variant_name
from bopsweep.readers.plots.data import arm_label, group_by_point, held
from bopsweep.studies.designs import SearchDesign

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from bopsweep.readers.plots.data import Run, SeedBands, StudyData

SYMBOLS = {"gamma": "γ", "sigma": "σ", "tau": "τ", "lr": "Adam lr"}
MAX_LEGEND = 12
VAL_ACC_LABEL = "validation accuracy (%)"
# a figure's title (suptitle) and a panel's; a long one wraps at the figure's edge, never cut
SUPTITLE: dict[str, Any] = {"fontsize": 10, "wrap": True}
TITLE: dict[str, Any] = {"fontsize": 9, "wrap": True}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: no display needed."""
    matplotlib.use("Agg")
    # here, not at the top: pyplot is imported once the backend is chosen
    import matplotlib.pyplot as plt

    return plt


# --- text ---------------------------------------------------------------------------------------
def fmt_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return (
        f"{value:.0e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e3) else f"{value:g}"
    )


def param_label(name: str) -> str:
    """A param as figures name it: γ, σ, τ by their symbols (``gamma_schedule``: "γ schedule")."""
    head, sep, tail = name.partition("_")
    if head in SYMBOLS:
        return SYMBOLS[head] + (" " + tail.replace("_", " ") if sep else "")
    return name.replace("_", " ")


def variant_label(config: dict[str, Any]) -> str:
    """A configuration's optimizer as figures name it, e.g. "Bop2ndOrder unbiased"."""
    return variant_name(config["optimizer"], config.get("unbiased", False))


def fixed_description(data: StudyData, exclude: set[str]) -> str:
    """The study's fixed settings for a title: variant, hyperparameters, norm, batch, epochs."""
    base = data.spec["base"]
    varying = set(data.spec["grid"]) | exclude | {k for a in data.spec["arms"] for k in a}
    if isinstance(data.design, SearchDesign):  # the search space's dimensions are not fixed
        varying |= {"optimizer", "unbiased", "norm", "gamma", "sigma", "tau"}
    parts = []
    if not {"optimizer", "unbiased"} & varying:
        parts.append(variant_label(base))
    for name in ("gamma", "sigma", "tau"):
        if name not in varying and base.get(name) is not None:
            parts.append(f"{SYMBOLS[name]}={fmt_value(base[name])}")
    if "norm" not in varying:
        parts.append(f"{base['norm']} norm")
    parts.append(f"batch {base['batch_size']}, {base['epochs']} epochs, width {base['width']:g}")
    return ", ".join(parts)


def held_note(data: StudyData, param: str) -> str:
    """The grid axes a one-factor view holds, for its title."""
    fixed = held(data, param)
    return (
        "; held: " + ", ".join(f"{SYMBOLS.get(k, k)}={fmt_value(v)}" for k, v in fixed.items())
        if fixed
        else ""
    )


def seeds_note(groups: dict[str, list[Run]]) -> str:
    n = max((len(g) for g in groups.values()), default=1)
    return f" — mean of {n} seeds, band: min–max" if n > 1 else ""


# --- colours and lines --------------------------------------------------------------------------
def arm_colours(data: StudyData) -> tuple[dict[str, list[Run]], dict[str, str], dict]:
    """The study's runs grouped by configuration (seeds together), each group's label, and
    each label's colour."""
    groups = group_by_point(data.runs)
    labels = {k: arm_label(g[0]) for k, g in groups.items()}
    return groups, labels, assign_colours(data, list(labels.values()))


def arm_panels(
    data: StudyData, layers: list[str] | None, columns: int, width: float
) -> tuple[Any, Any, list[str], dict[str, list[Run]], dict[str, str], dict[str, Any]]:
    """A figure of one row of ``columns`` panels per part of the network ("network", then each
    of ``layers``), and the arms drawn in it: the figure, its axes, the parts, the runs grouped
    by configuration, each group's label and colour."""
    panels = ["network", *(layers or [])]
    groups, labels, colours = arm_colours(data)
    fig, axes = pyplot().subplots(
        len(panels), columns, figsize=(width, 3.2 * len(panels)), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    return fig, axes, panels, groups, labels, {k: colours[labels[k]] for k in groups}


def assign_colours(
    data: StudyData, keys: list[str], numeric: dict[str, float] | None = None
) -> dict:
    """Colours for ``keys``, stable within a study (each key keeps its colour across figures)."""
    plt = pyplot()
    new = [k for k in keys if k not in data.colours]
    if numeric:  # ordered values: a sequential map by rank
        ordered = sorted(new, key=lambda k: numeric.get(k, math.inf))
        cmap = plt.get_cmap("viridis")
        for i, k in enumerate(ordered):
            data.colours[k] = cmap(0.9 * i / max(1, len(ordered) - 1))
    elif len(data.colours) + len(new) <= 10:
        cmap = plt.get_cmap("tab10")
        for k in new:
            data.colours[k] = cmap(len(data.colours))
    else:  # more than ten: spread over a sequential map rather than repeat colours
        cmap = plt.get_cmap("turbo")
        for i, k in enumerate(new):
            data.colours[k] = cmap(0.05 + 0.9 * i / max(1, len(new) - 1))
    return {k: data.colours[k] for k in keys}


def draw_band(
    ax: Any,
    band: pd.DataFrame,
    x: str,
    colour: Any,
    label: str | None,
    style: str = "-",
    scale: float = 1.0,
) -> None:
    """The mean as a line; the min–max band around it where the seeds differ."""
    ax.plot(band[x], band["mean"] * scale, style, color=colour, label=label, linewidth=1.4)
    if (band["max"] > band["min"]).any():
        ax.fill_between(
            band[x], band["min"] * scale, band["max"] * scale, color=colour, alpha=0.18, linewidth=0
        )


def draw_bands(
    ax: Any,
    bands: SeedBands,
    colours: Mapping[Any, Any],
    labels: Mapping[Any, str | None],
    style: str = "-",
    scale: float = 1.0,
) -> None:
    """:func:`draw_band` of each non-empty band; past :data:`MAX_LEGEND` (no legend can name
    them) as one collection of lines and one of bands, from the bands' arrays: matplotlib
    draws 10,000 lines as artists of their own in minutes, as one collection in seconds."""
    x = bands.x
    arrays = {k: bands.arrays(k) for k in bands}
    drawn = [k for k, a in arrays.items() if len(a[x])]
    if len(drawn) <= MAX_LEGEND:
        for k in drawn:
            draw_band(ax, bands[k], x, colours[k], labels.get(k), style, scale)
        return

    def points(a: dict[str, Any], y: str) -> Any:
        return np.column_stack([a[x].astype(float), a[y].astype(float) * scale])

    lines = LineCollection(
        [points(arrays[k], "mean") for k in drawn],
        colors=[colours[k] for k in drawn],
        linewidths=1.4,
        linestyles=style,
    )
    named = sum(labels.get(k) is not None for k in drawn)
    if named:  # one entry that legend() counts as the lines it stands for
        lines.set_label(f"{named} configurations")
        setattr(lines, _COUNT, named)
    ax.add_collection(lines)
    spread = [k for k in drawn if (arrays[k]["max"] > arrays[k]["min"]).any()]
    if spread:
        outlines = [
            np.vstack([points(arrays[k], "min"), points(arrays[k], "max")[::-1]]) for k in spread
        ]
        ax.add_collection(
            PolyCollection(
                outlines, facecolors=[colours[k] for k in spread], alpha=0.18, linewidths=0
            )
        )
    ax.autoscale_view()


_COUNT = "bopsweep_lines"  # on a collection of draw_bands: how many labelled lines it holds


# --- axes and legends ---------------------------------------------------------------------------
def accuracy_axes(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)


def pi_axes(ax: Any, secondary: bool = True) -> None:
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("π_t = ln(flip fraction + e⁻⁹)")
    ax.set_ylim(-9.3, 0.3)
    ax.grid(alpha=0.3)
    if secondary:  # read π as a flip fraction on the right
        sec = ax.secondary_yaxis(
            "right",
            functions=(lambda p: np.exp(p), lambda f: np.log(np.clip(f, 1e-12, None))),
        )
        sec.set_ylabel("flip fraction (log scale)")
        sec.set_yscale("log")


def drop_titles(fig: Any) -> None:
    """No title on the figure or any of its panels (``bopsweep plot --no-title``, for a paper
    whose captions say it): applied to every figure once it is drawn, so no figure function
    needs to know. Constrained layout then gives the space back to the axes."""
    for ax in fig.axes:
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
    title = fig.suptitle("")  # an empty suptitle left out of the layout: no space kept for it
    title.set_in_layout(False)
    title.set_visible(False)


def legend(ax: Any, title: str | None = None) -> None:
    handles, _ = ax.get_legend_handles_labels()
    count = sum(getattr(h, _COUNT, 1) for h in handles)
    if count > MAX_LEGEND:  # unreadable as a legend: the other figures name the values
        ax.text(
            0.99,
            0.98,
            f"{count} configurations (no legend)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    elif handles:
        ax.legend(
            title=title,
            fontsize=8,
            title_fontsize=8,
            ncol=1 if len(handles) < 8 else 2,
            loc="best",
            frameon=False,
        )
