"""Fencing and atomic queueing: a trial's writes come only from the attempt that owns it, a
retry takes its folder over from a process that lost the trial, and drivers that queue or make
a study at once do it once. Real SQLite and PostgreSQL, real trial processes.

The PostgreSQL tests use conftest's ``pg`` fixture, and those on both backends its ``storage``
(they skip without a server, and fail in CI).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from bopsweep.driver.protocol import EXIT_BUSY
from bopsweep.driver.queue import TrialQueue
from bopsweep.errors import UserError
from bopsweep.store import Store
from bopsweep.store.fencing import TrialTakenOver
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.store.urls import engine_url
from bopsweep.studies import TrialConfig, expand, grid_study
from bopsweep.trial.run_dir import read_rows
from tests.helpers import (
    TINY_SETTINGS,
    at_once,
    check_integrity,
    queue,
    trial_processes,
    wait_until,
    worker,
)

GRID = {"gamma": [1e-8, 1e-7, 1e-6, 1e-5, 1e-4], "tau": [1e-6, 1e-5, 1e-4]}  # 15 trials


def spec(name: str = "s"):
    return grid_study(name, TrialConfig(epochs=2), GRID)


def test_the_rows_of_a_trial_taken_over_are_refused_and_nothing_is_written(storage):
    """The owner's late rows (it was stopped; another driver failed and re-queued its trial)
    are refused in the write's own transaction: the failed trial keeps the epochs it had."""
    store = Store(storage, create=True)
    study, _ = store.create(spec())
    q = TrialQueue(study)
    q.enqueue_missing(expand(spec()))
    mine = q.claim()
    assert mine is not None
    tid, owner = trial_id(mine), mine.system_attrs["bopsweep_owner"]
    row = {"epoch": 1, "val_acc": 0.5}
    sid = study_id(study)
    store.metrics.write(sid, tid, [row], {}, owner)
    assert store.metrics.stored_epochs(tid) == [1]
    # another driver judges it stale: FAIL and a retry, as Optuna's stale-trial callback does
    other = TrialQueue(Store(storage).load("s"))
    other.fail(other.trial(tid), "stale", "no heartbeat", requeue=0)
    late = [{"epoch": e, "val_acc": 0.6} for e in (2, 3)]
    with pytest.raises(TrialTakenOver):
        store.metrics.write(sid, tid, late, {}, owner, {2: 0.6, 3: 0.6})
    assert store.metrics.stored_epochs(tid) == [1]
    assert sorted(q.trial(tid).intermediate_values) == []  # the curve is fenced as well
    # a writer that claims to own a RUNNING trial it did not claim is refused too
    retry = q.claim()
    assert retry is not None and retry.system_attrs["bopsweep_owner"] != owner
    with pytest.raises(TrialTakenOver):
        store.metrics.write(sid, trial_id(retry), late, {}, owner)
    assert store.metrics.stored_epochs(trial_id(retry)) == []


def test_drivers_that_queue_one_study_at_once_queue_each_configuration_once(pg):
    """Eight drivers start together on a new study: each reads what it holds and queues what
    is missing, under the study's lock; 15 configurations give 15 trials, not 15 × k."""
    Store(pg, create=True).create(spec())
    planned = expand(spec())
    for _ in range(3):
        queues = [TrialQueue(Store(pg).load("s")) for _ in range(8)]
        added, errors = at_once(lambda q: q.enqueue_missing(planned), queues)
        assert errors == []
        trials = optuna.load_study(study_name="s", storage=engine_url(pg)).trials
        assert Counter(Counter(t.user_attrs["config_id"] for t in trials).values()) == {1: 15}
    assert sum(added) == 0  # the last round found everything queued


def test_commands_that_make_one_study_at_once_all_succeed(pg):
    """Six commands make the same new study at the same moment: one makes it, the others
    find it whole (no DuplicatedStudyError, no traceback), and it has one identity."""
    for n in range(3):
        stores = [Store(pg, create=True) for _ in range(6)]
        made, errors = at_once(lambda store, n=n: store.create(spec(f"s{n}")), stores)
        assert errors == []
        assert sorted(created for _, created in made) == [False] * 5 + [True]
        assert len({study.user_attrs["bopsweep_study_uuid"] for study, _ in made}) == 1


def test_a_worker_never_makes_a_study_deleted_after_it_read_it(storage, small_cifar_dir):
    """``worker`` and ``resume`` read the study's definition, then run it: deleted in between
    (``delete --yes``), the study is refused in one line, and not made again."""
    from bopsweep.driver import run_study
    from bopsweep.driver.study import DispatchOptions

    store = Store(storage, create=True)
    store.create(spec())
    store.delete_study("s")
    with pytest.raises(UserError, match="no bopsweep study named 's'"):
        options = DispatchOptions(storage, join=True, data_dir=str(small_cifar_dir))
        run_study(spec(), options)
    assert "s" not in Store(storage).study_names()


# --- the trial process side: its checkpoint folder -----------------------------------------------
def start_child(
    run_dir: Path, data: Path, owner: str, epochs: int, take_over: bool = False
) -> subprocess.Popen:
    """A trial process as the driver starts one (cold), for ``run_dir``, owned by ``owner``;
    ``take_over``: the retry of an attempt the database failed as lost."""
    config = TrialConfig(epochs=epochs, data_dir=str(data), **TINY_SETTINGS).to_dict()
    child = subprocess.Popen(
        [sys.executable, "-m", "bopsweep.driver.child", str(run_dir), "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "BOPSWEEP_TAKEOVER_SECONDS": "5"},
        start_new_session=True,
    )
    assert child.stdin is not None
    child.stdin.write(json.dumps({**config, "owner": owner, "take_over": take_over}) + "\n")
    child.stdin.close()
    return child


def messages(child: subprocess.Popen) -> list[dict]:
    assert child.stdout is not None
    out = child.stdout.read()
    child.wait(timeout=300)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_retry_takes_the_folder_over_from_the_live_process_of_a_lost_attempt(
    small_cifar_dir, tmp_path
):
    """The old attempt's process is alive and holds the folder: the retry asks for it, the old
    process leaves before it writes again, and the retry continues from its checkpoint; a
    stopped old process cannot answer, so the retry goes back to the queue (EXIT_BUSY, not a
    failure for good) and the old one, woken, leaves without writing."""
    run_dir = tmp_path / "run"
    old = start_child(run_dir, small_cifar_dir, "old", epochs=400)
    wait_until(lambda: len(read_rows(run_dir / "metrics.csv")) >= 2, 240, "the old attempt")
    old.send_signal(signal.SIGSTOP)
    time.sleep(0.5)
    rows_when_stopped = len(read_rows(run_dir / "metrics.csv"))
    busy = start_child(run_dir, small_cifar_dir, "busy", epochs=400, take_over=True)
    said = messages(busy)
    assert busy.returncode == EXIT_BUSY and said[-1]["type"] == "busy", said
    assert "queued again" in said[-1]["reason"]
    retry = start_child(
        run_dir, small_cifar_dir, "retry", epochs=rows_when_stopped + 2, take_over=True
    )
    old.send_signal(signal.SIGCONT)  # it sees the retry's request and leaves
    old.wait(timeout=120)
    assert old.returncode == EXIT_BUSY
    said = messages(retry)
    assert retry.returncode == 0 and said[-1]["type"] == "done", said
    resumed = next(m for m in said if m["type"] == "resumed")
    assert len(resumed["rows"]) >= rows_when_stopped - 1  # continued, not started over
    rows = read_rows(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, rows_when_stopped + 3))


def test_a_live_attempt_of_the_same_configuration_is_never_asked_to_leave(
    small_cifar_dir, tmp_path
):
    """Two live attempts of one configuration (a sampled duplicate, say): the second is told
    the folder is busy and leaves it alone; only a retry of a lost attempt may take it over."""
    run_dir = tmp_path / "run"
    first = start_child(run_dir, small_cifar_dir, "first", epochs=400)
    wait_until(lambda: len(read_rows(run_dir / "metrics.csv")) >= 1, 240, "the first attempt")
    second = start_child(run_dir, small_cifar_dir, "second", epochs=400)  # not a retry
    said = messages(second)
    assert second.returncode == EXIT_BUSY and said[-1]["type"] == "busy", said
    time.sleep(1.0)
    assert first.poll() is None  # still training: nobody asked it to leave
    assert (run_dir / ".owner").read_text() == "first"
    first.send_signal(signal.SIGTERM)
    messages(first)  # read what it sent (a full pipe would block its exit), and wait


@pytest.mark.slow
def test_a_stopped_trial_process_is_failed_and_its_trial_finished_by_a_retry(
    pg,
    small_cifar_dir,
    tmp_path,
):
    """A trial process stopped (SIGSTOP) makes no progress: its driver stops its heartbeat,
    the trial is failed after the grace period and re-queued, and the stopped process is
    stopped for good; the study completes (it hung for ever before)."""
    epochs = 12
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-7"}, epochs=epochs)
    w = worker(pg, tmp_path)
    wait_until(
        lambda: any(len(read_rows(m)) >= 2 for m in (tmp_path / "ckpt").rglob("metrics.csv")),
        240,
        "the trial mid-run",
    )
    (victim,) = trial_processes(w.pid)
    os.kill(victim, signal.SIGSTOP)
    _, err = w.communicate(timeout=300)
    assert w.returncode == 0, err
    trials = check_integrity(pg, 1, epochs)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert not Path(f"/proc/{victim}").exists() or "Z" in Path(f"/proc/{victim}/stat").read_text()


def test_a_configuration_is_claimed_once_at_a_time(tmp_path):
    """A copy queued while its configuration runs (a retry that found the folder busy) waits
    for that run to end instead of starting beside it."""
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, _ = store.create(spec())
    queue = TrialQueue(study)
    queue.enqueue_missing(expand(spec())[:1])
    (waiting,) = queue.trials("WAITING")
    queue.requeue(waiting, 0)  # the same configuration queued twice
    first = queue.claim()
    assert first is not None
    assert queue.claim() is None  # its copy waits while it runs
    queue.tell(first, "COMPLETE", 0.5)
    assert queue.claim() is not None  # and runs once it has ended


def test_a_trial_keeps_its_heartbeat_while_its_zygote_loads(pg, small_cifar_dir, tmp_path):
    """A worker claims a trial, then its zygote loads for seconds (torch's import), longer than
    this 2 s grace period: the claimed trial's heartbeats go on meanwhile, so another driver
    looking for stale trials all along never fails it (it did: a retry, two trials)."""
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-7"}, epochs=1)
    store = Store(pg, heartbeat=(1, 2, 3))
    other = TrialQueue(store.load("s"))
    w = worker(pg, tmp_path, beat=["--heartbeat-interval", "1", "--grace-period", "2"])
    try:
        while w.poll() is None:  # as another driver does on each turn
            other.fail_stale()
            time.sleep(0.2)
        assert w.returncode == 0, w.communicate()[1]
        assert [t.state.name for t in other.trials()] == ["COMPLETE"]
    finally:
        store.engine.dispose()


def test_a_trial_claimed_without_a_heartbeat_is_judged_stale_all_the_same(pg):
    """A driver cut off (an outage, a kill) between claiming a trial and its first heartbeat
    left it RUNNING forever: Optuna judges only trials with a heartbeat. Now it gets one from
    whoever looks for stale trials, and is failed and re-queued after the grace period."""
    store = Store(pg, create=True, heartbeat=(1, 2, 3))
    study, _ = store.create(spec())
    queue = TrialQueue(study)
    queue.enqueue_missing(expand(spec())[:1])
    claimed = queue.claim()  # and its driver is gone before it records a heartbeat
    assert claimed is not None
    queue.fail_stale()
    time.sleep(2.5)
    queue.fail_stale()
    assert queue.trial(trial_id(claimed)).state.name == "FAIL"
    assert len(queue.trials("WAITING")) == 1  # its retry
    store.engine.dispose()
