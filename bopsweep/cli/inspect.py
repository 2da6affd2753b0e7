"""The commands that only read a study: ``status``, ``studies``, ``table``, ``export`` and
``plot``.

Each opens the database read-only (not a byte changes, a read-only file system is fine).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bopsweep.cli.app import command, console
from bopsweep.cli.options import PANEL_OUTPUT, PANEL_STUDY, Database, Storage, StudyName
from bopsweep.defaults import (
    ExportFormat,
    FigureFormat,
    InspectFormat,
    TableFormat,
    TableMetric,
)

if TYPE_CHECKING:
    from bopsweep.readers.plots.data import StudyData
    from bopsweep.store import Store

STATUS_ROWS = 200  # trials in status's table without --all: more is no use in a terminal

FormatOption = Annotated[
    InspectFormat,
    typer.Option(help="table for people; json for programs (floats as stored, NaN as null)."),
]


def _print_json(document: object) -> None:
    import json

    typer.echo(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False))


@command(panel=PANEL_OUTPUT)
def status(
    database: Database = None,
    storage: Storage = None,
    study: StudyName = None,
    format: FormatOption = InspectFormat.TABLE,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all",
            help=f"Every trial in the table, not only the first {STATUS_ROWS} (json has all).",
        ),
    ] = False,
) -> None:
    """The trials of a study: state, epochs done, final and best validation accuracy, the C2I
    ratio after the last epoch (share of binary weights whose sign is still the initial one), and
    why a trial failed; for a search with --seeds K, each configuration's mean and spread."""
    from bopsweep.driver.seed_average import configurations, means_study
    from bopsweep.readers import report
    from bopsweep.store import SPEC_ATTR, Store, redact, storage_url
    from bopsweep.studies.designs import SearchDesign, stored_design

    url = storage_url(storage, database)
    store = Store.open_readonly(url)
    optuna_study = store.load(study)
    records = report.trial_records(store, optuna_study)
    means = configurations(optuna_study)  # a search with --seeds K
    if format == InspectFormat.JSON:
        document = report.status_document(optuna_study, records, redact(url))
        if means is not None:
            document["configurations"] = report.json_safe(means)
        _print_json(document)
        return
    from rich.table import Table

    table = Table()
    for column in report.STATUS_COLUMNS:
        table.add_column(column)
    shown = records if all_rows else records[:STATUS_ROWS]
    for row in report.status_rows(shown):
        table.add_row(*row)
    out = console()
    # the title on a line of its own: a table's title wraps at the table's width, mid-path
    out.print(report.status_title(optuna_study, records, redact(url)), markup=False, soft_wrap=True)
    out.print(table)
    if len(shown) < len(records):
        out.print(
            f"… {len(records) - len(shown):,} more trials; --all shows every one", markup=False
        )
    if means is not None:
        out.print(report.means_table(means))
    best = report.best_line(records) if means is None else report.best_mean_line(means)
    if best is not None:
        out.print(best, markup=False)
    if isinstance(stored_design(optuna_study.user_attrs[SPEC_ATTR]), SearchDesign):
        # a seed-averaged search's importances: of its configurations' means, one each
        searched = optuna_study if means is None else means_study(optuna_study)
        out.print(report.param_importances(searched))


@command(panel=PANEL_OUTPUT)
def studies(
    database: Database = None, storage: Storage = None, format: FormatOption = InspectFormat.TABLE
) -> None:
    """List the studies in a database with their kind and trial counts."""
    from bopsweep.readers import report
    from bopsweep.store import Store, redact, storage_url

    url = storage_url(storage, database)
    summaries = report.study_summaries(Store.open_readonly(url))
    if format == InspectFormat.JSON:
        _print_json(report.studies_document(summaries, redact(url)))
        return
    from rich.table import Table

    table = Table(title=f"studies in {redact(url)}", title_justify="left")
    for column in report.STUDIES_COLUMNS:
        table.add_column(column)
    for row in report.studies_rows(summaries):
        table.add_row(*row)
    console().print(table)


@command(panel=PANEL_OUTPUT)
def table(
    database: Database = None,
    storage: Storage = None,
    study: StudyName = None,
    format: Annotated[TableFormat, typer.Option(help="Table format.")] = TableFormat.MARKDOWN,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the table to this file. (default: print it)"),
    ] = None,
    metric: Annotated[
        TableMetric,
        typer.Option(help="The accuracy the configurations are compared with the baseline on."),
    ] = TableMetric.FINAL,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="The configuration the others are compared with, by its label as the table "
            "prints it. (default: the study's base point, else its first configuration)"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing output file (never a database)."),
    ] = False,
) -> None:
    """Table 1 with error bars: per configuration (seeds together), final and best validation
    accuracy and training accuracy as mean ± std with 95 % confidence intervals, and each
    configuration's difference from a baseline with its 95 % CI, a t-test (paired by seed, or
    Welch's) whose p is adjusted by Holm's method, and a verdict at α = 0.05 (from 3 seeds)."""
    from bopsweep.errors import UserError
    from bopsweep.files import atomic_write_text
    from bopsweep.outputs import check_output_file
    from bopsweep.readers.report import with_legacy_bests
    from bopsweep.readers.table import build_table, group_arms
    from bopsweep.readers.table_render import render
    from bopsweep.store import Store, database_file, storage_url
    from bopsweep.store.trial_config import study_base

    url = storage_url(storage, database)
    if output is not None:
        check_output_file(output, force, database_file(url))
    store = Store.open_readonly(url)
    optuna_study = store.load(study)
    trials = with_legacy_bests(store, optuna_study)  # a study of 0.1: two-step bests anew
    arms = group_arms(trials, study_base(optuna_study.user_attrs))
    if not arms:
        raise UserError(f"study {optuna_study.study_name} has no complete trial yet")
    text = render(build_table(optuna_study.study_name, arms, metric, baseline=baseline), format)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        atomic_write_text(output, text)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}") from None
    typer.echo(f"wrote the table of {len(arms)} configurations to {output}")


@command(panel=PANEL_OUTPUT)
def export(
    database: Database = None,
    storage: Storage = None,
    study: StudyName = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="File to write; its suffix is the format: .csv, .json, .parquet. '-': standard "
            "output, in CSV or --format (parquet only to a pipe).",
        ),
    ] = Path("trials.csv"),
    metrics: Annotated[
        bool, typer.Option("--metrics", help="Write the per-epoch metrics instead of the trials.")
    ] = False,
    steps: Annotated[
        bool, typer.Option("--steps", help="Write the per-logged-step π_t instead of the trials.")
    ] = False,
    format: Annotated[
        ExportFormat | None,
        typer.Option(
            help="File format, for an output name without one of those suffixes "
            "(parquet needs pyarrow). (default: the output's suffix)"
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing output file (never a database)."),
    ] = False,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Write TensorBoard runs instead of a file: one per trial, in DIR/STUDY/ "
            "(--force replaces an earlier export there). View: tensorboard --logdir DIR",
        ),
    ] = None,
) -> None:
    """Write a study's trials (or its metrics) to CSV, JSON or Parquet, losslessly, in the
    columns of Optuna's study.trials_dataframe() (number, value, datetime_start,
    datetime_complete, duration, params_NAME, state) followed by bopsweep's; or its trials'
    curves and hyperparameters as TensorBoard runs (--tensorboard)."""
    from bopsweep.errors import UserError
    from bopsweep.store import storage_url

    if metrics and steps:
        raise UserError("give --metrics or --steps, not both")
    url = storage_url(storage, database)
    if tensorboard is not None:
        if metrics or steps:
            raise UserError("--tensorboard writes every trial's curves; drop --metrics/--steps")
        _export_tensorboard(url, study, tensorboard, force)
    else:
        _export_frame(url, study, output, format, force, metrics or steps, steps)


def _export_tensorboard(url: str, study: str | None, tensorboard: Path, force: bool) -> None:
    """``export --tensorboard``: the study's trials as TensorBoard runs, in DIR/STUDY/."""
    from bopsweep.files import sigterm_as_interrupt
    from bopsweep.readers.tensorboard_export import export_study
    from bopsweep.store import Store

    store = Store.open_readonly(url)
    with sigterm_as_interrupt():  # `kill` cleans up as Ctrl-C does: no half export left
        folder, runs = export_study(store, store.load(study), tensorboard, force)
    typer.echo(f"wrote {runs} TensorBoard runs to {folder}/ (tensorboard --logdir {tensorboard})")


def _export_frame(
    url: str,
    study: str | None,
    output: Path,
    format: ExportFormat | None,
    force: bool,
    metrics: bool,
    steps: bool,
) -> None:
    """``export`` to a file or standard output: the study's trials, or (``metrics``) its
    per-epoch or (``steps``) per-step metrics, the output and its format checked first."""
    from bopsweep.files import sigterm_as_interrupt
    from bopsweep.outputs import check_output_file
    from bopsweep.readers.export import (
        STDOUT,
        check_engine,
        export_format,
        stdout_format,
        write_frame,
        write_stdout,
    )
    from bopsweep.store import Store, database_file

    to_stdout = str(output) == STDOUT
    if to_stdout:
        chosen = stdout_format(format)
    else:
        check_output_file(output, force, database_file(url))
        chosen = export_format(output, format)
    check_engine(chosen)
    from bopsweep.readers.report import metrics_frame, trials_frame

    store = Store.open_readonly(url)
    optuna_study = store.load(study)
    if metrics:
        frame = metrics_frame(store, optuna_study, steps=steps)
    else:
        frame = trials_frame(store, optuna_study)
    if to_stdout:  # the data alone: no line about it
        write_stdout(frame, chosen)
        return
    with sigterm_as_interrupt():
        write_frame(frame, output, chosen)
    typer.echo(f"wrote {len(frame)} rows to {output}")


@command(panel=PANEL_OUTPUT)
def plot(
    database: Database = None,
    storage: Storage = None,
    study: Annotated[
        str | None,
        typer.Option(
            help="Study name. (default: every study in the database)", rich_help_panel=PANEL_STUDY
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the figures and index.md.")] = Path(
        "figures"
    ),
    format: Annotated[FigureFormat, typer.Option(help="Figure format.")] = FigureFormat.PNG,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Draw the ablation of this swept parameter only; repeatable."),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Add π_t panels for layers: last (the Bop paper's figure), all, or "
            "names like conv1,fc3."
        ),
    ] = None,
    no_title: Annotated[
        bool,
        typer.Option(
            "--no-title",
            help="No titles on the figures or their panels (for a paper whose captions say it).",
        ),
    ] = False,
) -> None:
    """Draw every figure that fits the studies in a database: ablation, summary, schedule,
    comparison, π_t and Optuna figures, plus an index.md listing them. A study still running is
    drawn as far as it has got."""
    from bopsweep.errors import UserError
    from bopsweep.readers.plots import draw_study, parse_layers, study_folders, write_index
    from bopsweep.store import Store, database_file, scrub, storage_url

    layers = parse_layers(layer)
    store = Store.open_readonly(storage_url(storage, database))
    datas = _studies_to_draw(store, study, param, layers)
    folders = study_folders(out, [d.name for d in datas], database_file(store.url))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror}") from None
    written = {
        d.name: draw_study(d, out, format.value, param, layers, not no_title, folders[d.name])
        for d in datas
    }
    command = scrub("bopsweep plot " + " ".join(sys.argv[2:]), store.url)
    index = write_index(out, written, command)
    total = sum(len(w) for w in written.values())
    typer.echo(
        f"wrote {total} figures for {len(written)} "
        f"stud{'y' if len(written) == 1 else 'ies'} to {out}/ (list: {index})"
    )


def _studies_to_draw(
    store: Store, study: str | None, param: list[str] | None, layers: list[str]
) -> list[StudyData]:
    """The data of the studies ``plot`` draws: the one named, or every bopsweep study in the
    database (those sweeping a ``param``, where some are given)."""
    from bopsweep.errors import UserError
    from bopsweep.readers.plots import load_study_data, swept_params

    names = [study] if study is not None else store.bopsweep_studies()
    if not names:
        store.load(None)  # says the database holds no bopsweep study
    datas = [load_study_data(store, store.load(name), layers) for name in names]
    if param and study is None:
        datas = [d for d in datas if set(param) & set(swept_params(d))]
        if not datas:
            raise UserError(f"no study in the database sweeps {', '.join(param)}")
    return datas
