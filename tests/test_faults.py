"""Fault injection: a study survives SIGKILL, SIGINT, SIGTERM and SIGHUP of its driver or of a
trial process at random moments, and ends with every configuration complete exactly once.

Real processes throughout: the driver is ``python -m bopsweep`` started as a user would, its
trial processes are found through /proc and killed with real signals, and every interruption
of the driver is followed by ``bopsweep resume``. The moments come from a seeded generator, so
a failure reproduces; its message lists the faults injected until then.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import optuna
import pytest

from bopsweep.store.optuna_adapter import trial_id
from bopsweep.trial.run_dir import read_rows
from tests.helpers import TINY, study_folder, trial_processes_in, zygotes

SEED = 20261122
FAULTS = 30
# long enough that the study outlasts its 30 faults on an idle machine too (20 and 60 did not:
# a tiny epoch takes a fraction of a second); on 2 loaded cores about 90 of its 360 epochs
# had run when the 30th fault was injected, and the rest took a minute
CONFIGS, EPOCHS = ("1e-6", "1e-5", "1e-4"), 120
# (who, signal, the driver's exit code when it was running)
KINDS = [
    ("driver", signal.SIGKILL, -signal.SIGKILL),
    ("driver", signal.SIGINT, 130),
    ("driver", signal.SIGTERM, 130),
    ("driver", signal.SIGHUP, 130),  # the terminal or ssh session is gone
    ("trial", signal.SIGKILL, None),
    ("trial", signal.SIGTERM, None),
]


DRIVERS: list[int] = []  # pids of the drivers started, to look for their zygotes


def start(cwd: Path, *args: str) -> subprocess.Popen:
    driver = subprocess.Popen(
        [sys.executable, "-m", "bopsweep", *args, "--max-retries", "1000", "--quiet"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    DRIVERS.append(driver.pid)
    return driver


def study_exists(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT count(*) FROM studies").fetchone()[0])
    except sqlite3.Error:
        return False


def restart(cwd: Path, first: list[str]) -> subprocess.Popen:
    """``bopsweep resume``; or, if the killed driver never made the study, the study command
    again (what a user does: resume has nothing to resume)."""
    if study_exists(cwd / "study.db"):
        return start(cwd, "resume", "study.db", "--workers", "2")
    return start(cwd, *first)


def stored_epochs(db: Path) -> dict[int, list[int]]:
    """Epochs stored per trial id, counting only rows that belong to the trial (id and start)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT m.trial_id, m.epoch FROM bopsweep_epochs m JOIN trials t "
            "ON t.trial_id = m.trial_id AND t.datetime_start = m.trial_start ORDER BY m.epoch"
        ).fetchall()
    epochs: dict[int, list[int]] = defaultdict(list)
    for tid, epoch in rows:
        epochs[tid].append(epoch)
    return epochs


@pytest.mark.slow
def test_a_study_survives_random_kills_of_its_driver_and_trials(small_cifar_dir, tmp_path):
    rng = random.Random(SEED)
    grid = ["grid", "--param", "tau", "--values", ",".join(CONFIGS), "--epochs", str(EPOCHS)]
    first = [*grid, "--workers", "2", "--data-dir", str(small_cifar_dir), *TINY]
    log: list[str] = []
    driver: subprocess.Popen | None = start(tmp_path, *first)

    def context() -> str:
        return "faults so far: " + "; ".join(log)

    # the first fault at a known moment: a trial with epochs checkpointed loses its driver
    runs: Path | None = None
    while runs is None:  # once the study has its identity
        time.sleep(0.2)
        with contextlib.suppress(Exception):
            runs = study_folder(tmp_path / "study.db", "grid-tau")
    deadline = time.monotonic() + 300
    while not (done := {d.name: len(read_rows(d / "metrics.csv")) for d in runs.glob("*")}) or (
        max(done.values()) < 3
    ):
        assert time.monotonic() < deadline and driver.poll() is None, "no trial got going"
        time.sleep(0.1)
    witness, rows = max(done.items(), key=lambda kv: kv[1])
    driver.kill()
    driver.communicate()
    log.append(f"SIGKILL driver with {rows} epochs of {witness} written")
    driver = None

    while len(log) < FAULTS:
        if driver is None:
            driver = restart(tmp_path, first)
        time.sleep(rng.uniform(0.05, 6.0))
        if driver.poll() is not None:  # the study finished between two faults
            _, err = driver.communicate()
            assert driver.returncode == 0, context() + err
            break
        who, sig, expected = rng.choice(KINDS)
        if who == "trial":
            pids = trial_processes_in(tmp_path)
            if not pids:  # between trials: hit the driver instead
                who, sig, expected = "driver", signal.SIGKILL, -signal.SIGKILL
            else:
                victim = rng.choice(sorted(pids))
                with contextlib.suppress(ProcessLookupError):  # it may have just finished
                    os.kill(victim, sig)
                log.append(f"{sig.name} trial {victim}")
                continue
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=120)
        log.append(f"{sig.name} driver -> {driver.returncode}")
        # 0: it finished first; -sig: it was still starting (Python's own handling of the
        # signal, before bopsweep's: nothing written yet)
        assert driver.returncode in (expected, 0, -sig), context() + err
        assert "Traceback" not in err, context() + err
        driver = None

    if driver is None:
        driver = restart(tmp_path, first)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, context() + err
    print(f"faults survived: {len(log)}")
    assert len(log) >= FAULTS, context()

    # --- the study is whole --------------------------------------------------------------------
    db = tmp_path / "study.db"
    assert not trial_processes_in(tmp_path), "a trial process outlived its driver"
    assert not [z for pid in DRIVERS for z in zygotes(pid)], "a zygote outlived its driver"
    trials = optuna.load_study(study_name="grid-tau", storage=f"sqlite:///{db}").trials
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")], context()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    by_config = defaultdict(list)
    for t in complete:
        by_config[t.user_attrs["config_id"]].append(t)
    assert len(by_config) == len(CONFIGS), context()
    assert all(len(ts) == 1 for ts in by_config.values()), context()

    stored = stored_epochs(db)
    every = list(range(1, EPOCHS + 1))
    for config_id, (t,) in by_config.items():
        assert stored[trial_id(t)] == every, f"trial {t.number}: {context()}"
        assert sorted(t.intermediate_values) == every, f"trial {t.number}: {context()}"
        csv_rows = read_rows(runs / config_id / "metrics.csv")
        assert [r["epoch"] for r in csv_rows] == every, f"trial {t.number}: {context()}"
        db_acc = [t.intermediate_values[e] for e in every]
        assert [r["val_acc"] for r in csv_rows] == pytest.approx(db_acc), context()

    # --- every retry continued from where the attempt before it had checkpointed ---------------
    attempts = defaultdict(list)
    for t in trials:
        if "config_id" in t.user_attrs:
            attempts[t.user_attrs["config_id"]].append(t)
    continued = 0
    for chain in attempts.values():
        chain.sort(key=lambda t: t.number)
        for before, after in itertools.pairwise(chain):
            done = before.user_attrs.get("epochs_done")
            resumed = after.user_attrs.get("resumed_from_epoch")
            # only an attempt that got going knows where it resumed (one stopped while its
            # process was starting has recorded nothing yet)
            if done is not None and resumed is not None and after.user_attrs.get("epochs_done"):
                assert resumed >= done, f"{before.number}->{after.number}: {context()}"
                continued += resumed > 0
    # the checkpoint of the first fault was continued, not trained again (its CSV row can be
    # one epoch ahead of its checkpoint)
    (final,) = by_config[witness]
    assert final.user_attrs["resumed_from_epoch"] >= rows - 1, context()
    print(json.dumps({"faults": len(log), "trials": len(trials), "continued": continued}))
