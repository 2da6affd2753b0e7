"""The paper's figures from any study: ablation, summary, schedule, comparison, π_t, Optuna.

Every figure function takes a :class:`~bopsweep.readers.plots.data.StudyData` (trials and metrics
read
back through pandas) and returns a matplotlib figure, so tests can check the data drawn;
:func:`draw_study` writes every figure that fits a study and returns what it wrote. A study
still running is drawn as far as it has got. Matplotlib runs on the Agg backend: no display
needed.

* :mod:`~bopsweep.readers.plots.data`: a study read back (one run per configuration);
* :mod:`~bopsweep.readers.plots.style`: colours, axes, legends, titles, the figures' conventions;
* :mod:`~bopsweep.readers.plots.figures`: ablation, summary, comparison, schedule and π_t figures;
* :mod:`~bopsweep.readers.plots.optuna_plots`: the figures of an Optuna search (history, parallel
  coordinates, importances), drawn in this style from the trials;
* :mod:`~bopsweep.readers.plots.index`: every figure of a study written out, and ``index.md``.

Matplotlib, pandas and Optuna are imported by the functions that use them: importing this
package stays cheap.
"""

from bopsweep.readers.plots.data import load_study_data, swept_params
from bopsweep.readers.plots.figures import (
    ablation_figure,
    comparison_figure,
    pi_figure,
    schedule_figure,
    summary_figure,
)
from bopsweep.readers.plots.index import (
    FORMATS,
    LAYERS,
    draw_study,
    parse_layers,
    study_figures,
    study_folders,
    write_index,
)
from bopsweep.readers.plots.optuna_plots import optuna_figures

__all__ = [
    "FORMATS",
    "LAYERS",
    "ablation_figure",
    "comparison_figure",
    "draw_study",
    "load_study_data",
    "optuna_figures",
    "parse_layers",
    "pi_figure",
    "schedule_figure",
    "study_figures",
    "study_folders",
    "summary_figure",
    "swept_params",
    "write_index",
]
