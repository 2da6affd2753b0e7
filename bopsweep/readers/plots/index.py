"""Every figure that fits a study, written to a folder, and ``index.md`` listing them; the
command's ``--format`` and ``--layer`` choices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bopsweep.defaults import FigureFormat, values
from bopsweep.errors import UserError
from bopsweep.files import atomic_open, atomic_write_text
from bopsweep.folders import NAME_MAX, inside, name_component
from bopsweep.outputs import check_not_own_state
from bopsweep.readers.plots.data import LAYERS, StudyData, swept_params
from bopsweep.readers.plots.figures import (
    ablation_figure,
    comparison_figure,
    pi_figure,
    schedule_figure,
    summary_figure,
)
from bopsweep.readers.plots.optuna_plots import optuna_figures
from bopsweep.readers.plots.style import drop_titles, pyplot
from bopsweep.readers.plots.weights import has_weight_metrics, weights_figure
from bopsweep.studies.designs import FigureName, ScheduleDesign

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = values(FigureFormat)
INDEX = "index.md"


@dataclass
class Written:
    path: Path
    description: str


OPTUNA_FIGURES = {
    "optuna_history": "final validation accuracy per trial of the search, and the best so far",
    "optuna_parallel": "parallel coordinates of the search's complete trials",
    "optuna_importances": "parameter importances (as bopsweep status)",
}


@dataclass
class Drawn:
    name: str
    figure: Figure
    description: str


def study_figures(
    data: StudyData,
    params: list[str] | None = None,
    layers: list[str] | None = None,
    titles: bool = True,
) -> list[Drawn]:
    """Every figure that fits ``data``: those its design names (:attr:`Design.figures
    <bopsweep.studies.designs.Design.figures>`), drawn in :data:`DRAWERS`' order (open: the
    caller closes them). Without ``titles`` no figure keeps a title
    (:func:`~bopsweep.readers.plots.style.drop_titles`)."""
    swept = swept_params(data)
    for param in params or []:
        if param not in swept:
            raise UserError(
                f"--param {param!r} is not swept in study {data.name}"
                + (f"; it sweeps {', '.join(swept)}" if swept else "")
            )
    figures: list[Drawn] = []
    for name, draw in DRAWERS.items():
        if name in data.design.figures and (data.runs or name in WITHOUT_RUNS):
            figures.extend(draw(data, params or swept, layers))
    if not titles:
        for drawn in figures:
            drop_titles(drawn.figure)
    return figures


def _optuna(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    return [Drawn(name, fig, OPTUNA_FIGURES[name]) for name, fig in optuna_figures(data).items()]


def _sweep(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    figures = []
    for param in params:
        what = f"accuracy and π_t per value of {param} (Fig. 3)"
        figures.append(Drawn(f"ablation_{param}", ablation_figure(data, param), what))
        what = f"final and best validation accuracy against {param}"
        figures.append(Drawn(f"summary_{param}", summary_figure(data, param), what))
    return figures


def _schedule(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    assert isinstance(data.design, ScheduleDesign)  # the one design that names it
    what = f"{data.design.schedule_param} scheduled up, down and constant (Fig. 4)"
    return [Drawn("schedule", schedule_figure(data), what)]


def _comparison(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    if swept_params(data):  # a grid over numbers: its ablations compare its points
        return []
    what = "training and validation accuracy per configuration (Fig. 5/6)"
    return [Drawn("comparison", comparison_figure(data), what)]


def _pi(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    what = "flip metric π_t per step" + (f", layers {', '.join(layers)}" if layers else "")
    return [Drawn("pi", pi_figure(data, layers), what)]


def _weights(data: StudyData, params: list[str], layers: list[str] | None) -> list[Drawn]:
    if not has_weight_metrics(data):
        return []
    what = ", ".join(["FF and C2I ratios per epoch", *(f"layer {n}" for n in layers or [])])
    return [Drawn("weights", weights_figure(data, layers), what)]


# Each figure a design may name, drawn by its function, in this order (a search's first: its
# variants take a study's first colours); only those in WITHOUT_RUNS are drawn before any run
# has an epoch.
DRAWERS: dict[FigureName, Callable[[StudyData, list[str], list[str] | None], list[Drawn]]] = {
    FigureName.OPTUNA: _optuna,
    FigureName.SWEEP: _sweep,
    FigureName.SCHEDULE: _schedule,
    FigureName.COMPARISON: _comparison,
    FigureName.PI: _pi,
    FigureName.WEIGHTS: _weights,
}
WITHOUT_RUNS = {FigureName.OPTUNA}


def study_folders(out: Path, names: list[str], database: Path | None = None) -> dict[str, Path]:
    """Each study's folder of figures, ``out/NAME``: its name, read from a database, made one
    safe folder name (:func:`~bopsweep.folders.name_component`: ``..`` or ``/etc`` stay in
    ``out``, ``a/b`` and ``a_b`` get folders of their own, a study named ``index.md`` does not
    take the index's place). Refused, before anything is written: two studies that would still
    share a folder (names that differ only in case, on a file system that ignores it), a
    folder that leads out of ``out`` (a link), one on bopsweep's own state."""
    check_not_own_state(out, database)
    check_not_own_state(out / INDEX, database)
    folders: dict[str, Path] = {}
    seen: dict[str, str] = {}
    for name in names:
        folder = out / name_component(name, NAME_MAX, reserved=(INDEX,))
        key = folder.name.casefold()
        if key in seen:
            raise UserError(
                f"studies {seen[key]!r} and {name!r} would be drawn in the same folder {folder}; "
                "draw them one at a time (--study) into different --out folders"
            )
        seen[key] = name
        if not inside(folder, out):
            raise UserError(f"{folder} leads outside {out} (a link?); remove it or choose another")
        check_not_own_state(folder, database)
        folders[name] = folder
    return folders


def figure_path(folder: Path, name: str, fmt: str) -> Path:
    """``folder/NAME.FMT``; ``name`` may hold a swept parameter's name, read from the
    database: made a safe file name that stays in ``folder``."""
    path = folder / f"{name_component(name, NAME_MAX)}.{fmt}"
    if not inside(path, folder):
        raise UserError(f"{path} leads outside {folder} (a link?); remove it")
    return path


def draw_study(
    data: StudyData,
    out: Path,
    fmt: str = "png",
    params: list[str] | None = None,
    layers: list[str] | None = None,
    titles: bool = True,
    folder: Path | None = None,
) -> list[Written]:
    """Every figure that fits ``data``, written to ``folder`` (default: its folder in ``out``,
    :func:`study_folders`); what was written."""
    plt = pyplot()
    if folder is None:
        folder = study_folders(out, [data.name])[data.name]
    figures = study_figures(data, params, layers, titles)
    written = []
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot write to {out}: {e.strerror}") from None
        for drawn in figures:
            path = figure_path(folder, drawn.name, fmt)
            try:
                with atomic_open(path, "wb") as f:  # never half a figure, whatever interrupts it
                    drawn.figure.savefig(f, dpi=150, format=fmt)
            except OSError as e:
                raise UserError(f"cannot write {path}: {e.strerror}") from None
            written.append(Written(path, drawn.description))
    finally:
        for drawn in figures:
            plt.close(drawn.figure)
    return written


def write_index(out: Path, entries: dict[str, list[Written]], command: str) -> Path:
    """``out/index.md``: one line per figure, and the command that draws them again."""
    lines = ["# bopsweep figures", "", f"Drawn again by: `{command}`", ""]
    for study, written in entries.items():
        lines.append(f"## {study}")
        lines.append("")
        if not written:
            lines.append("- (no finished epoch yet)")
        for w in written:
            lines.append(f"- [{w.path.name}]({w.path.relative_to(out)}): {w.description}")
        lines.append("")
    path = out / INDEX
    try:
        atomic_write_text(path, "\n".join(lines))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    return path


def parse_layers(text: str | None) -> list[str]:
    """``--layer``: ``last`` (fc3, the Bop paper's figure), ``all``, or names like conv1,fc3."""
    if not text:
        return []
    if text == "last":
        return ["fc3"]
    if text == "all":
        return list(LAYERS)
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    for n in names:
        if n not in LAYERS:
            raise UserError(
                f"unknown layer {n!r}; use last, all, or names from {', '.join(LAYERS)}"
            )
    return names
