"""Studies end to end: a real driver, real trial processes, a real SQLite database.

These tests start ``bopsweep`` as a child process, as a user would, and kill it or its trial
processes with real signals.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.helpers import (
    TINY,
    assert_one_complete_per_configuration,
    bopsweep,
    epochs_in,
    grid_args,
    invoke,
    one_line_error,
    run_dirs,
    start,
    trial_processes,
    trials,
    wait_until,
    zygotes,
)


def count(cwd: Path, study: str, state: str) -> int:
    db = cwd / "study.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM trials t JOIN studies s ON t.study_id = s.study_id "
                "WHERE s.study_name = ? AND t.state = ?",
                (study, state),
            ).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.slow
def test_grid_study_with_two_workers_runs_every_trial_once(small_cifar_dir, tmp_path):
    args = grid_args("gamma", "1e-7,1e-6,1e-5", 2, small_cifar_dir)
    result = bopsweep(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 configurations, 3 newly queued" in result.stdout
    ts = trials(tmp_path, "grid-gamma")
    assert_one_complete_per_configuration(ts, 3, 2, tmp_path)
    # each trial's end line (plain lines: stderr is not a terminal) gives the study's progress
    ends = [line for line in result.stderr.splitlines() if ": COMPLETE val_acc" in line]
    assert [line.split("study: ")[1].split(" · ")[0] for line in ends] == [
        "1/3 trials",
        "2/3 trials",
        "3/3 trials",
    ]
    assert "study: 3/3 trials · 6/6 epochs · elapsed " in ends[-1]
    assert ends[-1].endswith(" · ETA 0:00:00")  # nothing left
    assert {t.user_attrs["slot"] for t in ts} == {"cpu0", "cpu1"}

    # Optuna's own command line reads the study: every trial COMPLETE, with plain params
    optuna_cli = Path(sys.executable).with_name("optuna")
    listed = subprocess.run(
        [
            str(optuna_cli),
            "trials",
            "--storage",
            "sqlite:///study.db",
            "--study-name",
            "grid-gamma",
            "-f",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert sorted(r["params"]["gamma"] for r in rows) == [1e-7, 1e-6, 1e-5]
    assert all(r["params"]["variant"] == "bop2-unbiased" for r in rows)

    # the same command again queues nothing and re-runs nothing
    again = bopsweep(*args, cwd=tmp_path)
    assert again.returncode == 0 and "0 newly queued" in again.stdout
    assert len(trials(tmp_path, "grid-gamma")) == 3

    status = bopsweep("status", "study.db", cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("COMPLETE") == 3
    assert "best: trial" in status.stdout
    listing = bopsweep("studies", "study.db", cwd=tmp_path)
    assert "grid-gamma" in listing.stdout and "grid" in listing.stdout

    exported = bopsweep("export", "study.db", "-o", "trials.csv", cwd=tmp_path)
    assert exported.returncode == 0
    import pandas as pd

    frame = pd.read_csv(tmp_path / "trials.csv")
    assert sorted(frame["params_gamma"]) == [1e-7, 1e-6, 1e-5]
    assert (frame["state"] == "COMPLETE").all() and frame["value"].notna().all()
    bopsweep("export", "study.db", "--metrics", "--format", "json", "-o", "m.json", cwd=tmp_path)
    metrics = pd.read_json(tmp_path / "m.json")
    assert len(metrics) == 6 and {"val_acc", "train_acc", "pi", "params_gamma"} <= set(metrics)


@pytest.mark.slow
def test_resume_after_the_driver_is_killed_continues_from_checkpoints(small_cifar_dir, tmp_path):
    epochs = 20
    args = grid_args("gamma", "1e-7,1e-6,1e-5", epochs, small_cifar_dir)
    driver = start(*args, cwd=tmp_path)
    # kill it while the third trial runs, after the first two finished
    wait_until(lambda: count(tmp_path, "grid-gamma", "COMPLETE") == 2, what="two complete trials")
    wait_until(
        lambda: any(3 <= epochs_in(d) < epochs for d in run_dirs(tmp_path, "grid-gamma")),
        what="the third trial mid-run",
    )
    children = trial_processes(driver.pid)
    assert children, "the driver runs no trial process"
    assert len(zygotes(driver.pid)) == 1  # one warm-start zygote for both CPU slots
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    wait_until(lambda: not set(children) & set(trial_processes()), 20, "orphans to stop")
    wait_until(lambda: not zygotes(driver.pid), 20, "its zygotes to stop")
    before = {t.number: t for t in trials(tmp_path, "grid-gamma")}
    finished = {n for n, t in before.items() if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(finished) == 2 and any(t.state.name == "RUNNING" for t in before.values())

    result = bopsweep("resume", "study.db", "--workers", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 resumed after an interruption" in result.stdout
    # the study's progress counts the finished trials and the restored epochs as done
    assert f"study: 3/3 trials · {3 * epochs}/{3 * epochs} epochs" in result.stderr
    ts = trials(tmp_path, "grid-gamma")
    assert_one_complete_per_configuration(ts, 3, epochs, tmp_path)
    for n in finished:  # finished trials are kept as they were, never re-run
        assert ts[n].state.name == "COMPLETE" and ts[n].value == before[n].value
    retry = [t for t in ts if t.number >= 3]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].user_attrs["resumed_from_epoch"] >= 2  # continued, not restarted
    interrupted = [t for t in ts if t.user_attrs.get("failure") == "interrupted"]
    assert len(interrupted) == 1


def kill_a_trial_mid_run(driver: int, cwd: Path, epochs: int) -> None:
    """SIGKILL a trial process of study grid-tau run by ``driver`` once it has 3 epochs and
    more than 5 to go."""
    wait_until(
        lambda: any(3 <= epochs_in(d) < epochs - 5 for d in run_dirs(cwd, "grid-tau")),
        what="a trial mid-run",
    )
    victim_dir = next(d for d in run_dirs(cwd, "grid-tau") if epochs_in(d) >= 3)
    victim = next(pid for pid, cmd in trial_processes(driver).items() if str(victim_dir) in cmd)
    os.kill(victim, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_trial_process_is_recorded_and_retried_from_its_checkpoint(
    small_cifar_dir, tmp_path
):
    epochs = 20
    args = grid_args("tau", "1e-6,1e-5", epochs, small_cifar_dir)
    driver = start(*args, cwd=tmp_path)
    kill_a_trial_mid_run(driver.pid, tmp_path, epochs)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert "FAILED (killed by SIGKILL); re-queued" in err
    ts = trials(tmp_path, "grid-tau")
    assert_one_complete_per_configuration(ts, 2, epochs, tmp_path)
    crashed = [t for t in ts if t.state.name == "FAIL"]
    assert len(crashed) == 1 and crashed[0].user_attrs["failure"] == "crash"
    assert crashed[0].user_attrs["fail_reason"] == "killed by SIGKILL"
    retry = next(
        t
        for t in ts
        if t.state.name == "COMPLETE"
        and t.user_attrs["config_id"] == crashed[0].user_attrs["config_id"]
    )
    assert retry.user_attrs["attempt"] == 1 and retry.user_attrs["resumed_from_epoch"] >= 2


# a driver whose first retry meets a locked database: the trial's end is written, its retry not
LOSES_ITS_FIRST_REQUEUE = """
import sqlite3, sys
import sqlalchemy.exc
from bopsweep.driver.queue import TrialQueue
real, calls = TrialQueue.requeue, []
def requeue(*args, **kwargs):
    calls.append(args)
    if len(calls) == 1:
        locked = sqlite3.OperationalError("database is locked")
        raise sqlalchemy.exc.OperationalError("INSERT INTO trials", {}, locked)
    return real(*args, **kwargs)
TrialQueue.requeue = requeue
from bopsweep.cli import app
app(prog_name="bopsweep", args=sys.argv[1:])
"""


@pytest.mark.slow
def test_a_retry_the_database_refused_to_queue_is_queued_before_the_driver_ends(
    small_cifar_dir, tmp_path
):
    """The end of a crashed trial and its retry are two writes: when the database fails
    between them, the running driver still queues the retry and runs it (before, the retry
    was lost until a later command, and the study ended with a configuration undone)."""
    epochs = 20
    args = grid_args("tau", "1e-6,1e-5", epochs, small_cifar_dir)
    driver = subprocess.Popen(
        [sys.executable, "-c", LOSES_ITS_FIRST_REQUEUE, *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_a_trial_mid_run(driver.pid, tmp_path, epochs)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert "the database is unreachable" in err  # the refused write, ridden out
    ts = trials(tmp_path, "grid-tau")
    assert_one_complete_per_configuration(ts, 2, epochs, tmp_path)
    (crashed,) = [t for t in ts if t.state.name == "FAIL"]
    assert crashed.user_attrs["requeued"]


@pytest.mark.slow
def test_ctrl_c_exits_130_refuses_a_second_driver_and_resumes_cleanly(small_cifar_dir, tmp_path):
    # long enough that the trials are still running when Ctrl-C comes, even on a loaded machine
    epochs = 60
    args = grid_args("sigma", "1e-3,1e-2", epochs, small_cifar_dir)
    driver = start(*args, cwd=tmp_path)
    wait_until(
        lambda: sum(epochs_in(d) >= 3 for d in run_dirs(tmp_path, "grid-sigma")) == 2,
        what="both trials mid-run",
    )

    # in-process: no interpreter start-up between the check and the Ctrl-C
    second = invoke(["resume", str(tmp_path / "study.db")])
    one_line_error(second, "another bopsweep driver is running")
    assert all(epochs_in(d) < epochs for d in run_dirs(tmp_path, "grid-sigma"))

    children = trial_processes(driver.pid)
    assert len(children) == 2, children
    assert len(zygotes(driver.pid)) == 1  # one warm-start zygote for both CPU slots
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "bopsweep resume" in out and "Traceback" not in err
    assert not set(children) & set(trial_processes()), "a trial process outlived Ctrl-C"
    assert not zygotes(driver.pid), "a zygote outlived Ctrl-C"
    ts = trials(tmp_path, "grid-sigma")
    assert [t.user_attrs.get("failure") for t in ts if t.state.name == "FAIL"] == [
        "interrupted"
    ] * 2
    assert sum(t.state.name == "WAITING" for t in ts) == 2  # re-queued, ready to resume

    result = bopsweep("resume", "study.db", "--workers", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ts = trials(tmp_path, "grid-sigma")
    assert_one_complete_per_configuration(ts, 2, epochs, tmp_path)
    assert all(t.user_attrs["resumed_from_epoch"] >= 2 for t in ts if t.state.name == "COMPLETE")


@pytest.mark.slow
def test_a_diverging_trial_fails_with_its_reason_and_is_not_retried(small_cifar_dir, tmp_path):
    args = [
        "grid",
        "--param",
        "lr",
        "--values",
        "0.01,1e37",
        "--workers",
        "2",
        "--epochs",
        "2",
        "--data-dir",
        str(small_cifar_dir),
        "--width",
        "0.0625",
        "--batch-size",
        "10",
        "--device",
        "cpu",
        "--quiet",
    ]
    result = bopsweep(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    ts = trials(tmp_path, "grid-lr")
    failed = [t for t in ts if t.state.name == "FAIL"]
    assert len(ts) == 2 and len(failed) == 1
    assert failed[0].user_attrs["failure"] == "diverged"
    assert "training loss became" in failed[0].user_attrs["fail_reason"]
    status = bopsweep("status", "study.db", cwd=tmp_path)
    assert "FAIL (diverged)" in status.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["grid", "--param", "alpha"], "unknown --param 'alpha'"),
        (["grid", "--param", "gamma", "--values", " , "], "--values for gamma is empty"),
        (["grid", "--param", "gamma", "--values", "1e-7,abc"], "must be a number, got 'abc'"),
        (
            ["grid", "--param", "gamma", "--param", "tau", "--values", "1e-7"],
            "one --values per --param",
        ),
        (["grid", "--param", "gamma", "--set", "sigma=big"], "sigma in --set must be a number"),
        (["pow10", "--gamma", "1e-9:2e-5"], "2e-05 is not a power of ten"),
        (["pow10", "--tau", "1e-4:1e-8"], "runs backwards"),
        (["pow10"], "at least one range"),
        (["schedule", "--param", "eps"], "cannot schedule 'eps'"),
        (["schedule", "--param", "tau", "--kind", "cosine"], "'cosine' is not one of"),
        (["schedule", "--param", "tau", "--kind", "constant"], "exponential or polynomial"),
        (["grid", "--param", "gamma", "--storage", "ftp://host/x"], "not a database URL"),
        (["grid", "--param", "gamma", "--workers", "0"], "--workers must be >= 1"),
        (["status", "absent.db"], "no such database"),
        (["run", "absent.toml"], "does not exist"),
    ],
)
def test_bad_study_input_gets_one_line_and_exit_2(
    small_cifar_dir, tmp_path, monkeypatch, args, fragment
):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        [*args, "--data-dir", str(small_cifar_dir), *TINY]
        if args[0] in ("grid", "pow10", "schedule")
        else args,
    )
    one_line_error(result, fragment)


def test_databases_and_files_of_other_programs_are_refused(small_cifar_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    (tmp_path / "notes.db").write_text("not a database at all, just some notes\n")
    (tmp_path / "bad.toml").write_text(
        '[study]\nname = "x"\nkind = "grid"\n[base]\nepochs = "ten"\n'
    )
    (tmp_path / "odd.toml").write_text('[study]\nname = "x"\n[grid]\ngamma = [1e-7]\nextra = 1\n')
    cases = [
        (["status", "shop.db"], "database of another program"),
        (
            [
                "grid",
                "--param",
                "gamma",
                "--storage",
                "sqlite:///notes.db",
                "--data-dir",
                str(small_cifar_dir),
                *TINY,
            ],
            "not a SQLite database",
        ),
        (["run", "bad.toml"], "epochs in [base] of bad.toml must be an integer, got 'ten'"),
        (["run", "odd.toml"], "unknown key 'extra'"),
    ]
    for args, fragment in cases:
        one_line_error(invoke(args), fragment)
