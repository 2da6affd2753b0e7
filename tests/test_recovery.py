"""A study is never wedged and a trial's failure is never lost: real drivers, trial processes,
SQLite databases and (where this machine lets root mount one) full file systems."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from bopsweep.driver import DispatchOptions, run_study
from bopsweep.store import Store
from bopsweep.studies import TrialConfig, grid_study
from bopsweep.trial.run_dir import read_rows
from tests.helpers import TINY, bopsweep, invoke, one_line_error, study_folder


def trials(db: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (root only; skipped elsewhere)."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- nothing before a trial starts may wedge a study ----------------------------------------------
def test_a_checkpoint_dir_that_is_a_file_is_refused_before_the_study_exists(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").write_text("not a folder")
    args = ["grid", "--param", "tau", "--values", "1e-6", "--data-dir", str(small_cifar_dir)]
    result = invoke([*args, "--checkpoint-dir", "ckpt", *TINY])
    one_line_error(result, "is not a folder")
    assert not (tmp_path / "study.db").exists()


@pytest.mark.slow
def test_resume_tolerates_a_trial_the_driver_took_but_never_configured(small_cifar_dir, tmp_path):
    """A driver killed between Optuna's ask() and writing the trial's configuration."""
    args = ["optuna", "--trials", "2", "--epochs", "1", "--sampler-seed", "0"]
    queued = bopsweep(
        *args, "--data-dir", str(small_cifar_dir), *TINY, "--queue-only", cwd=tmp_path
    )
    assert queued.returncode == 0, queued.stderr
    db = tmp_path / "study.db"
    optuna.load_study(study_name="optuna-search", storage=f"sqlite:///{db}").ask()  # the orphan

    result = bopsweep("resume", "study.db", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    ts = trials(db, "optuna-search")
    orphan = ts[0]
    assert orphan.state.name == "FAIL" and "never configured" in orphan.user_attrs["fail_reason"]
    assert not orphan.user_attrs["requeued"]
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    assert len(complete) == 2  # the orphan does not count toward --trials
    assert not any(t.state.name in ("RUNNING", "WAITING") for t in ts)


@pytest.mark.slow
def test_a_study_file_run_keeps_its_data_dir_for_resume(small_cifar_dir, tmp_path):
    study_file = tmp_path / "mine.toml"
    study_file.write_text(
        '[study]\nname = "mine"\nkind = "grid"\n[base]\nepochs = 1\nwidth = 0.0625\n'
        "batch_size = 20\n[grid]\ntau = [1e-6]\n"
    )
    queued = bopsweep(
        "run", str(study_file), "--data-dir", str(small_cifar_dir), "--queue-only", cwd=tmp_path
    )
    assert queued.returncode == 0, queued.stderr
    result = bopsweep("resume", "study.db", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # no --data-dir: the study kept it
    assert [t.state.name for t in trials(tmp_path / "study.db", "mine")] == ["COMPLETE"]


@pytest.mark.slow
@pytest.mark.parametrize("size", ["48k", "96k", "128k", "160k", "192k"])
def test_a_disk_that_fills_while_a_study_is_set_up_gets_one_line_and_the_rerun_goes_on(
    small_cifar_dir, tmp_path, size
):
    """However far the first command got (the database file, its tables, the study, its
    queue), a full disk is one line, and the same command goes on once there is room."""
    args = ["grid", "--param", "tau", "--values", "1e-6,1e-5,1e-4", "--queue-only"]
    args += ["--data-dir", str(small_cifar_dir), *TINY]
    with small_disk(tmp_path / "db", size) as folder:
        first = bopsweep(*args, cwd=folder)
        if first.returncode != 0:
            assert first.returncode in (1, 2) and "Traceback" not in first.stderr, first.stderr
            (line,) = first.stderr.strip().splitlines()
            assert line.startswith("bopsweep: error:") and "disk is full" in line
        subprocess.run(["mount", "-o", "remount,size=8m", str(folder)], check=True)
        again = bopsweep(*args, cwd=folder)
        assert again.returncode == 0, again.stderr
        states = [t.state.name for t in trials(folder / "study.db", "grid-tau")]
        assert states == ["WAITING"] * 3


# --- failures keep their reason ---------------------------------------------------------------
@pytest.mark.slow
def test_a_trial_on_a_full_disk_fails_with_its_real_error(small_cifar_dir, tmp_path):
    with small_disk(tmp_path / "ckpt", "64k") as ckpt:
        args = ["grid", "--param", "tau", "--values", "1e-6", "--epochs", "2", "--max-retries", "0"]
        data = ["--data-dir", str(small_cifar_dir), "--checkpoint-dir", str(ckpt)]
        result = bopsweep(*args, *data, *TINY, cwd=tmp_path, timeout=120)
        assert result.returncode == 1, result.stderr  # failed trials, promptly
    (trial,) = trials(tmp_path / "study.db", "grid-tau")
    assert trial.state.name == "FAIL" and trial.user_attrs["failure"] == "crash"
    reason = trial.user_attrs["fail_reason"]
    assert "exited with code" not in reason  # the trial's own last words, not a guess
    assert "Error" in reason, reason


def test_a_trial_whose_log_cannot_be_written_still_reports_why_it_failed(small_cifar_dir, tmp_path):
    spec = grid_study("g", TrialConfig(epochs=1, width=0.0625, batch_size=20), {"tau": [1e-6]})
    from bopsweep.studies import expand

    Store(f"sqlite:///{tmp_path / 'study.db'}", create=True).create(spec)  # its identity
    run_dir = study_folder(tmp_path / "study.db", "g") / expand(spec)[0].config_id
    (run_dir / "trial.log").mkdir(parents=True)  # the log cannot be opened
    (run_dir / "steps.csv").mkdir()  # and the trial crashes writing its first epoch
    options = DispatchOptions(
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        device="cpu",
        max_retries=0,
        data_dir=str(small_cifar_dir),
    )
    assert run_study(spec, options, echo=lambda *_: None) == 1
    (trial,) = trials(tmp_path / "study.db", "g")
    assert "IsADirectoryError" in trial.user_attrs["fail_reason"]
    assert "steps.csv" in trial.user_attrs["fail_reason"]


@pytest.mark.slow
def test_a_database_on_a_full_disk_stops_the_driver_at_once_and_resumes_later(
    small_cifar_dir, tmp_path
):
    with small_disk(tmp_path / "db", "8m") as folder:
        args = ["grid", "--param", "tau", "--values", "1e-6,1e-5", "--epochs", "30"]
        data = ["--data-dir", str(small_cifar_dir), "--checkpoint-dir", str(tmp_path / "ckpt")]
        driver = subprocess.Popen(
            [sys.executable, "-m", "bopsweep", *args, *data, *TINY, "--workers", "2"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not any((tmp_path / "ckpt").rglob("checkpoint.pt")):
            assert time.monotonic() < deadline and driver.poll() is None, driver.communicate()
            time.sleep(0.2)
        filler = folder / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        started = time.monotonic()
        _, err = driver.communicate(timeout=120)
        assert driver.returncode == 1, err
        assert time.monotonic() - started < 60  # not the 15 minutes of a network outage
        assert "cannot be written" in err and "Traceback" not in err

        filler.unlink()
        result = bopsweep("resume", "study.db", "--workers", "2", "--quiet", cwd=folder)
        assert result.returncode == 0, result.stderr
        ts = trials(folder / "study.db", "grid-tau")
    assert sorted(t.state.name for t in ts if t.state.name == "COMPLETE") == ["COMPLETE"] * 2
    assert not any(t.state.name in ("RUNNING", "WAITING") for t in ts)


# --- Ctrl-C at the last moment ----------------------------------------------------------------
def test_ctrl_c_after_the_last_trial_still_exits_130_with_the_resume_command(
    small_cifar_dir, tmp_path
):
    spec = grid_study("g", TrialConfig(epochs=1, width=0.0625, batch_size=20), {"tau": [1e-6]})
    options = DispatchOptions(
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        device="cpu",
        data_dir=str(small_cifar_dir),
    )
    said: list[str] = []

    def echo(line: str) -> None:
        said.append(line)
        if "trials complete" in line:  # the summary line: Ctrl-C arrives while it prints
            raise KeyboardInterrupt

    assert run_study(spec, options, echo=echo) == 130
    assert "Continue with: bopsweep resume" in said[-1]
    assert [t.state.name for t in trials(tmp_path / "study.db", "g")] == ["COMPLETE"]


def test_train_on_a_full_disk_says_so_in_one_line_and_leaves_no_half_file(
    small_cifar_dir, tmp_path
):
    with small_disk(tmp_path / "disk", "96k") as disk:
        args = ["train", "--data-dir", str(small_cifar_dir), "--epochs", "3", "--out"]
        result = invoke([*args, str(disk / "run"), *TINY])
        assert result.exit_code == 1, result.output
        assert "No space left on device" in result.output and "--resume" in result.output
        assert "Traceback" not in result.output
        assert not [p.name for p in (disk / "run").iterdir() if p.name.startswith(".")]


# a checkpoint write of the real helper, stopped halfway (a checkpoint's first megabyte)
HALF_WRITTEN = """
import sys, time
from pathlib import Path
from bopsweep.files import atomic_open

with atomic_open(Path(sys.argv[1]), "wb") as f:
    f.write(bytes(1 << 20))
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def test_a_checkpoint_write_killed_outright_leaves_no_temporary_once_the_trial_restarts(
    small_cifar_dir, tmp_path
):
    from bopsweep.files import remove_stale_temps

    run = tmp_path / "run"
    train = ["train", "--data-dir", str(small_cifar_dir), "--epochs", "1", "--out", str(run)]
    assert invoke([*train, *TINY]).exit_code == 0
    writer = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITTEN, str(run / "checkpoint.pt")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        temps = list(run.glob(".checkpoint.pt.*.tmp"))
        assert len(temps) == 1
        assert remove_stale_temps(run) == [] and temps[0].exists()  # a live writer's: kept
    finally:
        writer.kill()
        writer.communicate(timeout=60)
    assert temps[0].exists()  # kill -9: nothing cleans up at once
    result = invoke(["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert [r["epoch"] for r in read_rows(run / "metrics.csv")] == [1, 2]
