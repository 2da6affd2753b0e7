"""The weight metrics of Liu et al., How Do Adam and Training Strategies Help BNNs
Optimization?, ICML 2021, arXiv:2106.11309, per epoch for every arm of a study: the FF
ratio (the share of binary weights whose sign flips in a step, mean over the epoch's steps:
``flip_frac``) and the C2I ratio (the share whose sign is still the one at the start: ``c2i``).
Definitions: :mod:`bopsweep.trial.flips`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.ticker import MaxNLocator

from bopsweep.metric_keys import C2I
from bopsweep.readers.plots.data import StudyData, seed_bands
from bopsweep.readers.plots.style import (
    SUPTITLE,
    TITLE,
    arm_panels,
    draw_bands,
    fixed_description,
    legend,
    seeds_note,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def has_weight_metrics(data: StudyData) -> bool:
    """Whether any run logged C2I (runs of bopsweep before it did not)."""
    return any(r.column("epochs", C2I) is not None for r in data.runs)


def weights_figure(data: StudyData, layers: list[str] | None = None) -> Figure:
    """FF ratio (left, log axis) and C2I ratio (right) against epoch, network-wide and for each
    of ``layers``; one line per arm (mean over seeds, band min–max)."""
    fig, axes, panels, groups, labels, colour = arm_panels(data, layers, 2, 10)
    for row, panel in zip(axes, panels):
        suffix = "" if panel == "network" else f"_{panel}"
        where = "network-wide" if panel == "network" else f"layer {panel}"
        for ax, column, what in (
            (row[0], f"flip_frac{suffix}", "FF ratio (flip fraction per step)"),
            (row[1], f"c2i{suffix}", "C2I ratio (share of signs as at start)"),
        ):
            draw_bands(ax, seed_bands(groups, "epoch", column), colour, labels)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.set_title(where, **TITLE)
            ax.grid(alpha=0.3)
        row[0].set_yscale("log", nonpositive="mask")  # an epoch without a flip is not drawn
    legend(axes[0, 1])
    fig.suptitle(
        f"{data.name}: FF and C2I ratios{seeds_note(groups)}\n{fixed_description(data, set())}",
        **SUPTITLE,
    )
    return fig
