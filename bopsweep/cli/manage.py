"""``bopsweep delete``: remove a study, its metrics and (if asked) its trial folders."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bopsweep.cli.app import command, fail
from bopsweep.cli.options import PANEL_STORAGE, PANEL_STUDY, CheckpointDir, Database, Storage

if TYPE_CHECKING:
    from pathlib import Path

    import optuna


@command(panel=PANEL_STUDY)
def delete(
    database: Database = None,
    storage: Storage = None,
    study: Annotated[str, typer.Option(help="The study to delete (required).")] = "",
    checkpoints: Annotated[
        bool,
        typer.Option(
            "--checkpoints",
            help="Also delete the study's trial folders.",
            rich_help_panel=PANEL_STORAGE,
        ),
    ] = False,
    checkpoint_dir: CheckpointDir = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study: its trials, their metrics and (with --checkpoints) its trial folders.
    Refused while a driver runs on the database, or (PostgreSQL) any of its trials is running."""
    import shutil

    from bopsweep.driver.seed_average import delete_companion
    from bopsweep.errors import UserError
    from bopsweep.store import Store, driver_lock, redact, storage_url
    from bopsweep.store.urls import sqlite_path

    if not study:
        raise UserError("name the study to delete: --study NAME ('bopsweep studies' lists them)")
    url = storage_url(storage, database)
    store = Store(url)
    with driver_lock(url):
        optuna_study = store.load(study)
        trials = optuna_study.get_trials(deepcopy=False)
        running = sum(t.state.name == "RUNNING" for t in trials)
        # on SQLite the lock proves no driver runs: its running trials are a killed driver's
        if running and sqlite_path(url) is None:
            raise UserError(
                f"study {study} has {running} running trial(s) (a worker on another machine?); "
                "stop its workers first"
            )
        folder = _marked_folder(optuna_study, url, checkpoint_dir) if checkpoints else None
        what = f"study {study} ({len(trials)} trials) from {redact(url)}" + (
            f" and its trial folders in {folder}" if folder is not None else ""
        )
        if checkpoints and folder is None:
            what += " (it has no trial folder there to delete)"
        if running:
            what += f" ({running} left running by a driver that stopped)"
        if not yes:
            _confirm(what)
        # checked again under the study's lock: a worker may have started one meanwhile
        store.delete_study(study, running_allowed=sqlite_path(url) is not None)
        delete_companion(store.storage, study)  # a seed-averaged search's configurations
        if folder is not None:
            try:
                shutil.rmtree(folder)
            except OSError as e:
                raise fail(f"deleted the study but not all of {folder}: {e.strerror}", 1) from None
    typer.echo(f"deleted {what}")


def _marked_folder(
    optuna_study: optuna.Study, url: str, checkpoint_dir: Path | None
) -> Path | None:
    """The study's trial folder, only where it is marked as this study's: found by its
    identity, never by its name; None if there is none."""
    from bopsweep.folders import is_study_folder, study_folder
    from bopsweep.store import checkpoint_base, study_uuid

    identity = study_uuid(optuna_study)
    if identity is None:
        return None
    folder = study_folder(checkpoint_base(url, checkpoint_dir), optuna_study.study_name, identity)
    return folder if is_study_folder(folder, identity) else None


def _confirm(what: str) -> None:
    """Ask before deleting ``what``; without a terminal to ask on, refuse."""
    from bopsweep.errors import UserError

    if not sys.stdin.isatty():
        raise UserError(f"not deleting {what} without confirmation; pass --yes")
    typer.confirm(f"Delete {what}?", abort=True)
