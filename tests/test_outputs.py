"""Where outputs land: names read from a database are data, never paths; no output lands on
bopsweep's own state (the database, its SQLite siblings and lock, its checkpoint folders); a
``--force`` replaces only what bopsweep wrote; ``export -o -`` writes to standard output.

The studies are real SQLite studies with trials and metric rows (conftest's
``study_db``: a grid ``abl``). A study "made by another tool" under a name bopsweep would
refuse is that study renamed in the database, as Optuna (or any SQL client) can.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bopsweep.folders import NAME_MAX, name_component, write_marker
from tests import helpers
from tests.helpers import TINY, one_line_error


def rename(db: Path, old: str, new: str) -> None:
    """Rename a study in the database, as another tool could name it."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE studies SET study_name = ? WHERE study_name = ?", (new, old))
    conn.close()


def copy_study(db: Path, name: str, new: str) -> None:
    """A second study ``new`` that is a copy of ``name`` (its trials too), made with Optuna."""
    import optuna

    url = f"sqlite:///{db}"
    source = optuna.load_study(study_name=name, storage=url)
    copy = optuna.create_study(study_name=new, storage=url, direction="maximize")
    for key, value in source.user_attrs.items():
        copy.set_user_attr(key, value)
    copy.add_trials(source.get_trials(deepcopy=True))


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) → a digest of its bytes."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or path.is_dir():
                out[str(path.relative_to(folder))] = "/"
            else:
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def invoke(*args: object):
    return helpers.invoke([str(a) for a in args])


# --- 1. names read from a database are data -----------------------------------------------------
HOSTILE = ["..", "../../x", "/ABS", "a/../../b", ".hidden", "sp ace"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_study_named_like_a_path_is_plotted_and_exported_inside_the_output_folder(
    study_db,
    name,
):
    folder, _, _ = study_db
    db = folder / "study.db"
    if name == "/ABS":
        name = str(folder / "abs")  # an absolute path this test may write to
    rename(db, "abl", name)
    work = folder / "work"
    work.mkdir()
    before = set(tree(folder))
    result = invoke("plot", db, "--out", work / "figs")
    assert result.exit_code == 0, result.output
    result = invoke("export", db, "--study", name, "--tensorboard", work / "tb")
    assert result.exit_code == 0, result.output
    added = set(tree(folder)) - before
    assert added and all(path.startswith("work/") for path in added), sorted(added)
    (study_folder,) = set((work / "figs").iterdir()) - {work / "figs" / "index.md"}
    assert study_folder.name == name_component(name, NAME_MAX) != name
    assert any(study_folder.glob("*.png"))
    (run_root,) = (work / "tb").iterdir()
    assert run_root.name == name_component(name, NAME_MAX)
    assert any(run_root.glob("*/events.out.tfevents.*"))


def test_two_names_that_would_collapse_onto_one_folder_get_distinct_ones(study_db):
    folder, _, _ = study_db
    db = folder / "study.db"
    copy_study(db, "abl", "a_b")
    rename(db, "abl", "a/b")
    out, logdir = folder / "figs", folder / "tb"
    result = invoke("plot", db, "--out", out)
    assert result.exit_code == 0, result.output
    assert len({p.name for p in out.iterdir()} - {"index.md"}) == 2
    for name in ("a/b", "a_b"):  # the second is not taken for an earlier export of the first
        result = invoke("export", db, "--study", name, "--tensorboard", logdir)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in logdir.iterdir()) == sorted(
        [name_component("a/b", NAME_MAX), "a_b"]
    )
    assert name_component("a/b") != "a_b"


def test_a_study_named_like_the_index_gets_a_folder_of_its_own(study_db):
    folder, _, _ = study_db
    db = folder / "study.db"
    rename(db, "abl", "index.md")  # a name bopsweep itself accepts
    result = invoke("plot", db, "--out", folder / "figs")
    assert result.exit_code == 0, result.output
    assert (folder / "figs" / "index.md").is_file()


def test_studies_whose_folders_differ_only_in_case_are_refused_by_plot(study_db):
    folder, _, _ = study_db
    db = folder / "study.db"
    copy_study(db, "abl", "ABL")  # one folder on a file system that ignores case (macOS)
    one_line_error(invoke("plot", db, "--out", folder / "figs"), "same folder")
    assert not (folder / "figs").exists()


def test_a_swept_parameter_named_like_a_path_is_refused_before_anything_is_drawn(study_db):
    folder, _, _ = study_db
    db = folder / "study.db"
    with sqlite3.connect(db) as conn:  # another tool wrote the definition
        (raw,) = conn.execute(
            "SELECT value_json FROM study_user_attributes WHERE key = 'bopsweep_spec'"
        ).fetchone()
        spec = json.loads(raw)
        spec["grid"] = {"../../../escaped": spec["grid"]["tau"]}
        conn.execute(
            "UPDATE study_user_attributes SET value_json = ? WHERE key = 'bopsweep_spec'",
            (json.dumps(spec),),
        )
    conn.close()
    before = set(tree(folder))
    result = invoke("plot", db, "--out", folder / "figs")
    one_line_error(result, "unknown key '../../../escaped' in the grid")  # no bopsweep study
    assert set(tree(folder)) == before  # nothing drawn, inside or out


# --- 2. outputs never land on bopsweep's own state ------------------------------------------------
def own_state(folder: Path) -> dict[str, Path]:
    """The database's lock, its default checkpoint root holding a study's checkpoints (not
    marked: as before the marking), and a marked folder elsewhere."""
    db = folder / "study.db"
    (folder / "study.db.lock").write_text("")
    trial = folder / "study.ckpt" / "abl" / "cfg0"
    trial.mkdir(parents=True)
    (trial / "last.pt").write_bytes(b"checkpoint")
    marked = folder / "mine" / "abl"
    write_marker(folder / "mine", "root")
    (marked / "cfg0").mkdir(parents=True)
    (marked / "cfg0" / "last.pt").write_bytes(b"checkpoint")
    return {"db": db, "ckpt": folder / "study.ckpt", "marked": folder / "mine"}


def test_no_output_lands_on_the_database_its_lock_or_any_checkpoint_folder(study_db):
    folder, _, _ = study_db
    state = own_state(folder)
    db, ckpt, marked = state["db"], state["ckpt"], state["marked"]
    cases = [
        ("export", db, "-o", folder / "study.db.lock"),
        ("export", db, "-o", folder / "study.db-shm"),
        ("export", db, "-o", ckpt / "trials.csv"),
        ("export", db, "-o", ckpt / "abl" / "cfg0" / "last.pt"),
        ("export", db, "-o", marked / "trials.csv"),
        ("export", db, "--tensorboard", ckpt),
        ("export", db, "--tensorboard", marked),
        ("export", db, "--tensorboard", marked / "abl" / "cfg0"),
        ("table", db, "-o", folder / "study.db.lock"),
        ("table", db, "-o", ckpt / "table.md"),
        ("table", db, "-o", marked / "abl" / "table.md"),
        ("plot", db, "--out", ckpt),
        ("plot", db, "--out", marked / "abl"),
    ]
    before = tree(folder)
    for args in cases:
        for force in ([], ["--force"]):
            if args[0] == "plot" and force:
                continue
            result = invoke(*args, *force)
            one_line_error(result, "bopsweep")
            assert "checkpoint" in result.output or "database" in result.output, result.output
    assert tree(folder) == before


def test_a_folder_holding_the_checkpoints_is_never_replaced_by_an_export(study_db):
    folder, _, _ = study_db
    state = own_state(folder)
    db = state["db"]
    # a study called like the checkpoint root, exported beside it: DIR/STUDY is the root
    rename(db, "abl", "study.ckpt")
    before = tree(folder)
    for force in ([], ["--force"]):
        result = invoke("export", db, "--tensorboard", folder, *force)
        one_line_error(result, "checkpoint")
    assert tree(folder) == before


def test_a_study_command_and_train_refuse_tensorboard_runs_among_checkpoints(
    study_db,
    small_cifar_dir,
):
    folder, _, _ = study_db
    state = own_state(folder)
    data = ["--data-dir", str(small_cifar_dir), *TINY, "--epochs", "1"]
    storage, in_ckpt = f"sqlite:///{state['db']}", ["--tensorboard", state["ckpt"] / "tb"]
    before = tree(folder)
    for args in (
        ["resume", state["db"], "--tensorboard", state["ckpt"]],
        ["resume", state["db"], "--tensorboard", state["marked"]],
        ["grid", "--param", "tau", "--values", "1e-6", "--storage", storage, *in_ckpt, *data],
        ["train", "--out", folder / "run", "--tensorboard", state["marked"], *data],
    ):
        one_line_error(invoke(*args), "checkpoint")
    assert tree(folder) == before


def test_force_replaces_an_earlier_export_but_never_a_users_own_folder(study_db):
    folder, _, _ = study_db
    db, logdir = folder / "study.db", folder / "tb"
    mine = logdir / "abl"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own notes")
    for force in ([], ["--force"]):
        one_line_error(invoke("export", db, "--tensorboard", logdir, *force), "abl")
    assert (mine / "notes.txt").read_text() == "my own notes"
    (mine / "notes.txt").unlink()
    for _ in range(2):  # an empty folder, then the export it was replaced with
        result = invoke("export", db, "--tensorboard", logdir, "--force")
        assert result.exit_code == 0, result.output
    assert any(mine.glob("*/events.out.tfevents.*"))


# --- 3. export -o - ---------------------------------------------------------------------------
def export_to_stdout(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bopsweep", "export", "study.db", "-o", "-", *args],
        cwd=folder,
        capture_output=True,
        timeout=120,
    )


def test_export_to_standard_output_is_csv_or_the_format_asked_and_reads_back(
    study_db,
):
    folder, _, written = study_db
    before = tree(folder)
    csv = export_to_stdout(folder)
    assert csv.returncode == 0, csv.stderr
    assert csv.stderr == b""
    frame = pd.read_csv(io.BytesIO(csv.stdout))
    assert len(frame) == len(written) and "number" in frame.columns
    as_json = export_to_stdout(folder, "--format", "json", "--metrics")
    assert as_json.returncode == 0, as_json.stderr
    metrics = pd.read_json(io.BytesIO(as_json.stdout))
    assert len(metrics) == sum(len(t["rows"]) for t in written)
    assert tree(folder) == before  # no file called "-", nothing else written


def test_parquet_to_a_pipe_reads_back(study_db):
    pytest.importorskip("pyarrow")
    folder, _, written = study_db
    piped = export_to_stdout(folder, "--format", "parquet")
    assert piped.returncode == 0, piped.stderr
    assert len(pd.read_parquet(io.BytesIO(piped.stdout))) == len(written)


def test_parquet_is_refused_on_a_terminal_with_one_line(study_db):
    import pty

    folder, _, _ = study_db
    command = ["export", "study.db", "-o", "-", "--format", "parquet"]
    terminal, screen = pty.openpty()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "bopsweep", *command],
            cwd=folder,
            stdout=screen,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(screen)
        os.close(terminal)
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.startswith("bopsweep: error:") and "Parquet is binary" in line
