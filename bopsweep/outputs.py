"""Where a command's output may land: never on bopsweep's own state.

The one check of every output command (``export``, ``table -o``, ``plot --out``,
``--tensorboard``): a database and the files SQLite keeps beside it, the trials' checkpoint
folders and every folder marked as bopsweep's are refused, with or without ``--force``, before
anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from bopsweep.errors import UserError
from bopsweep.files import is_sqlite_file
from bopsweep.folders import inside, owned_by_bopsweep
from bopsweep.store.urls import checkpoint_base


def check_output_file(output: Path, force: bool, database: Path | None) -> None:
    """A file a command may write (``database``: the real file of the study's database, if
    any): never bopsweep's own state (:func:`check_not_own_state`), a database (any other), a
    folder or a file in a missing folder; an existing file only with ``--force``."""
    check_not_own_state(output, database)
    if output.is_symlink() and not output.exists():
        raise UserError(f"{output} is a broken link; give a plain file name")
    if output.exists() and not (output.is_file() or output.is_dir()):
        raise UserError(f"{output} is not a regular file (a device or a fifo?)")
    if output.is_dir():
        raise UserError(f"{output} is a folder; give a file name, e.g. {output / 'trials.csv'}")
    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: folder {output.parent} does not exist")
    if is_sqlite_file(output):
        raise UserError(f"{output} is a SQLite database; bopsweep never overwrites a database")
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to replace it")


SQLITE_SIBLINGS = ("-journal", "-wal", "-shm")


def check_not_own_state(
    target: Path, database: Path | None, holds: bool = False, also: Iterable[Path] = ()
) -> None:
    """Refuse, with or without ``--force``, an output at ``target`` (a file written, a folder
    written into, or with ``holds`` a folder replaced whole) that would land on bopsweep's own
    state, which an output would overwrite or mix with:

    * a SQLite database's file (``database``, its real file; None for a server), the
      ``-journal``, ``-wal`` and ``-shm`` files SQLite keeps beside it and the ``DB.lock`` an
      older bopsweep's driver kept (one may be running still): never the target;
    * the default checkpoint root ``DB.ckpt/`` beside it (marked or not yet), the folders in
      ``also`` (a ``--checkpoint-dir``, a training's run folder) and every folder marked as
      bopsweep's (:func:`bopsweep.folders.owned_by_bopsweep`): the target must not be one or
      lie in one, nor, with ``holds``, hold one (or the database).

    The one check of every output command (``export``, ``table -o``, ``plot --out``,
    ``--tensorboard``), made before anything is written."""
    real = Path(os.path.realpath(target))
    folders = [(Path(f), "a folder of bopsweep's trials") for f in also]
    if database is not None:
        db = Path(os.path.realpath(database))
        if real == db:
            raise UserError(f"{target} is the study's database; write the output to another file")
        if real.parent == db.parent and real.name in [db.name + s for s in SQLITE_SIBLINGS]:
            raise UserError(f"{target} is a file SQLite keeps beside the database; choose another")
        if real == db.with_name(db.name + ".lock"):
            raise UserError(f"{target} is the lock file of the database {db}; choose another")
        if holds and inside(db, real):
            raise UserError(f"{target} holds the database {db}; choose another folder")
        # the trials' checkpoints beside a SQLite file, marked or not yet
        root = checkpoint_base(f"sqlite:///{db}")
        folders.append((root, f"the checkpoint folder of the database {db}"))
    for folder, what in folders:
        if inside(real, folder) or (holds and inside(folder, real)):
            _refuse_own_folder(target, real, Path(os.path.realpath(folder)), what)
    marked = owned_by_bopsweep(real, depth=3 if holds else 0)
    if marked is not None:
        _refuse_own_folder(target, real, marked, "a folder of bopsweep's checkpoints")


def _refuse_own_folder(target: Path, real: Path, folder: Path, what: str) -> None:
    where = "is" if real == folder else "lies in" if folder in real.parents else "holds"
    raise UserError(
        f"{target} {where} {folder}, {what}; bopsweep never writes an output there "
        "(with or without --force): choose another place"
    )
