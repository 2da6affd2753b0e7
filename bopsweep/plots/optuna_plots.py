"""Optuna's own figures of a search: history, parameter importances, parallel coordinates."""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, cast

from bopsweep.plots.style import fixed_description

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bopsweep.plots.data import StudyData


def _figure(ax: Axes) -> Figure:
    """The figure of an Optuna plot: a top-level one (Optuna makes its own), not a subfigure."""
    return cast("Figure", ax.figure)


def optuna_figures(data: StudyData) -> dict[str, Figure]:
    """Optuna's own history, importance and parallel-coordinate plots (matplotlib backend).

    They are marked experimental in Optuna; that warning is silenced on purpose, since the
    figures are used as they are.
    """
    import optuna
    import optuna.visualization.matplotlib as ovm

    complete = data.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if complete:
            figures["optuna_history"] = _figure(ovm.plot_optimization_history(data.study))
            figures["optuna_parallel"] = _figure(
                ovm.plot_parallel_coordinate(
                    data.study,
                    params=[
                        p
                        for p in ("gamma", "sigma", "tau", "variant", "norm")
                        if any(p in t.params for t in complete)
                    ],
                )
            )
        if len(complete) >= 2:
            # too few distinct trials give no importance estimate: then there is no such figure.
            # PED-ANOVA, as bopsweep status ranks them (Optuna 4's default, fANOVA, needs sklearn)
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            with contextlib.suppress(ValueError, RuntimeError):
                figures["optuna_importances"] = _figure(
                    ovm.plot_param_importances(data.study, evaluator=evaluator)
                )
    for name, fig in figures.items():  # our title in place of Optuna's, with the settings
        fig.set_size_inches(9, 5.5)
        fig.axes[0].set_title(
            f"{data.name}: {name.split('_')[1]} (Optuna)\n{fixed_description(data, set())}",
            fontsize=10,
        )
        fig.tight_layout()
    return figures
