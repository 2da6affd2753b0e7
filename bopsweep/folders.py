"""The folders bopsweep owns, each marked with whose it is, and names that become paths.

A study's trial folders are keyed by the study's **identity**, a UUID stored in the database
when the study is made (never by its name alone, which another study, another database or a
study deleted and made again can share). Every folder bopsweep makes for trials holds a marker
file, ``.bopsweep``, a small JSON object saying what the folder is and whose::

    ROOT/.bopsweep                   {"kind": "root"}
    ROOT/SLUG-UUID/.bopsweep         {"kind": "study", "study_uuid": …, "study": NAME}
    ROOT/SLUG-UUID/CONFIG/.bopsweep  {"kind": "trial", "study_uuid": …, "config_id": …,
                                      "data": …}

``ROOT`` is ``--checkpoint-dir`` or ``DB.ckpt/`` beside a SQLite file; ``SLUG`` is the study
name made safe for a file name (:func:`safe_component`), for people to read; ``UUID`` is the
identity. A trial resumes only from a folder whose marker matches its own study, configuration
and data; ``bopsweep delete`` removes only a folder whose marker names the study it deletes;
and no command writes an output onto (or over) a marked folder (:func:`owned_by_bopsweep`).

Names read from a database (a study made by another tool may be called ``..`` or ``/etc``) are
data: :func:`safe_component` turns one into a single, harmless path component, and
:func:`inside` checks that a path built from one stays under its root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from bopsweep.errors import UserError
from bopsweep.files import atomic_write_text

MARKER = ".bopsweep"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_MAX = 64  # characters of a name kept in a folder name (file systems allow 255 bytes)
NAME_MAX = 100  # characters of a study's name kept in an output's folder name (plot, TensorBoard)


def safe_component(name: str, limit: int = SLUG_MAX) -> str:
    """``name`` as one path component that cannot escape or hide: runs of characters outside
    ``A-Z a-z 0-9 . _ -`` become ``_``, leading dots are dropped (no ``..``, no hidden file), at
    most ``limit`` characters; ``_`` if nothing is left."""
    slug = _UNSAFE.sub("_", name).lstrip(".")[:limit]
    return slug or "_"


def name_component(name: str, limit: int = SLUG_MAX, reserved: tuple[str, ...] = ()) -> str:
    """``name`` (read from a database) as the one path component of an output: the name
    itself where it already is a safe component (within ``limit`` characters, not one of the
    ``reserved`` names beside it, e.g. ``index.md``); otherwise :func:`safe_component` of it
    followed by ``-`` and 8 hex digits of its SHA-256, so that two names that would collapse
    onto one component (``a/b`` and ``a_b``) never share an output."""
    slug = safe_component(name, limit)
    if slug == name and name.casefold() not in {r.casefold() for r in reserved}:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe_component(name, max(1, limit - 9))}-{digest}"


def study_folder_name(name: str, study_uuid: str) -> str:
    """The folder of a study's trials under its checkpoint root: ``SLUG-UUID``."""
    return f"{safe_component(name)}-{study_uuid}"


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves to ``root`` or below it (links followed)."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == base or base in real.parents


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``, or None if it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_marker(folder: Path, kind: str, **fields: Any) -> None:
    """Mark ``folder`` (made if missing) as bopsweep's, of ``kind``; replaced whole."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MARKER, json.dumps({"kind": kind, **fields}) + "\n")


def owned_by_bopsweep(path: Path, depth: int = 3) -> Path | None:
    """The marked folder that ``path`` is, lies in, or holds (looking ``depth`` levels down);
    None if it touches none. An output must never be written there: it would replace or mix
    with a study's checkpoints."""
    real = Path(os.path.realpath(path))
    for folder in (real, *real.parents):
        if (folder / MARKER).is_file():
            return folder
    return _marked_below(real, depth)


def _marked_below(folder: Path, depth: int) -> Path | None:
    if depth <= 0 or not folder.is_dir():
        return None
    try:
        children = [c for c in folder.iterdir() if c.is_dir() and not c.is_symlink()]
    except OSError:
        return None
    for child in children:
        if (child / MARKER).is_file():
            return child
    for child in children:
        found = _marked_below(child, depth - 1)
        if found is not None:
            return found
    return None


# --- a study's folders ------------------------------------------------------------------------
def study_folder(root: Path, name: str, study_uuid: str) -> Path:
    """The folder of a study's trial folders: ``ROOT/SLUG-UUID``."""
    return Path(root) / study_folder_name(name, study_uuid)


def make_root(root: Path) -> None:
    """Make (and mark) a checkpoint root; one line if it cannot be made or written."""
    try:
        if read_marker(root) is None:
            write_marker(root, "root")
    except OSError as e:
        raise UserError(f"cannot keep trial folders in {root}: {e.strerror}") from None


def open_study_folder(
    root: Path, name: str, study_uuid: str, legacy_data: str | None = None
) -> Path:
    """The study's folder under ``root``, made and marked if new. A folder marked for another
    study is never taken (one line). ``legacy_data`` (the data's fingerprint): the study was
    made by bopsweep 0.1 and has just been given its identity; its folder ``ROOT/NAME`` (if NAME
    is a plain component and the folder is unmarked) becomes its own, each trial folder marked
    as trained on that data, so its interrupted trials still resume."""
    make_root(root)
    try:
        return _open_study_folder(root, name, study_uuid, legacy_data)
    except OSError as e:
        raise UserError(f"cannot keep trial folders in {root}: {e.strerror}") from None


def _open_study_folder(root: Path, name: str, study_uuid: str, legacy_data: str | None) -> Path:
    folder = study_folder(root, name, study_uuid)
    old = Path(root) / name
    if (
        legacy_data is not None
        and not folder.exists()
        and name == safe_component(name)
        and old.is_dir()
        and not old.is_symlink()
        and read_marker(old) is None
    ):
        for trial in (t for t in old.iterdir() if t.is_dir() and not t.is_symlink()):
            write_marker(trial, **trial_marker(study_uuid, trial.name, legacy_data))
        try:
            old.rename(folder)
        except OSError:
            if not folder.is_dir():  # not moved meanwhile by another worker of the study
                raise
    marker = read_marker(folder)
    if marker is None:
        write_marker(folder, "study", study_uuid=study_uuid, study=name)
    elif marker.get("kind") != "study" or marker.get("study_uuid") != study_uuid:
        raise UserError(f"{folder} belongs to another study ({MARKER} says so); remove it")
    return folder


def is_study_folder(folder: Path, study_uuid: str) -> bool:
    """Whether ``folder`` is marked as the folder of the study ``study_uuid``."""
    marker = read_marker(folder)
    return (
        marker is not None
        and marker.get("kind") == "study"
        and (marker.get("study_uuid") == study_uuid)
    )


def trial_marker(study_uuid: str, config_id: str, data: str) -> dict[str, Any]:
    """What a trial folder's marker holds: whose study, which configuration, which data (the
    fingerprint of its files, :func:`bopsweep.trial.cifar_files.fingerprint`)."""
    return {"kind": "trial", "study_uuid": study_uuid, "config_id": config_id, "data": data}
