"""Warm starts: trial processes forked from a zygote are as isolated as cold ones, and the warm
machinery never costs a trial. Real zygotes, real trial processes, real signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from bopsweep.driver import DispatchOptions, Driver, LoopSettings, run_study
from bopsweep.driver.process import TrialProcess, make_slots
from bopsweep.driver.protocol import CHILD_MODULE
from bopsweep.driver.warm import Zygotes
from bopsweep.errors import UserError
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.studies import TrialConfig, expand, grid_study
from bopsweep.trial.cifar_files import load_cifar10, make_synthetic, preload_cifar10
from tests.helpers import (
    TINY_SETTINGS,
    command_lines,
    epochs_in,
    study_folder,
    wait_until,
    warm_started,
    zygotes,
)

RESUME = ["--workers", "2", "--max-retries", "0", "--quiet"]


class Trial:
    """A trial process started as the driver starts one, its messages collected."""

    def __init__(self, run_dir: Path, config: dict[str, Any], pool: Zygotes | None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.process = TrialProcess(run_dir, make_slots("cpu")[0], config, self._on_message, pool)

    def _on_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            self.process.eof = True
        else:
            self.messages.append(message)

    def wait(self, timeout: float = 300) -> int:
        wait_until(self.process.exited, timeout, "the trial process to end")
        assert self.process.returncode is not None
        return self.process.returncode

    def epochs(self) -> int:
        return sum(m["type"] == "epoch" for m in self.messages)


def arguments(pid: int) -> list[str]:
    """A process's command line, without the zygote's padding."""
    argv = command_lines()[pid]
    while argv and not argv[-1]:
        argv.pop()
    return argv


def config(data: Path, epochs: int) -> dict[str, Any]:
    return TrialConfig(epochs=epochs, data_dir=str(data), **TINY_SETTINGS).to_dict()


def pool(data: Path, root: Path, notes: list[str]) -> Zygotes:
    slot = make_slots("cpu")[0]
    return Zygotes({slot.name: slot.env}, str(data), root, notes.append)


# --- the data a zygote loads once -------------------------------------------------------------
def test_preloaded_data_is_served_until_its_files_change(tmp_path):
    make_synthetic(tmp_path, n_train=50, n_test=20, seed=0)
    preload_cifar10(tmp_path)
    train, _ = load_cifar10(tmp_path)
    assert load_cifar10(tmp_path)[0] is train  # served, not read again

    make_synthetic(tmp_path, n_train=50, n_test=20, seed=1)  # the same files, rewritten
    fresh, _ = load_cifar10(tmp_path)
    assert fresh is not train and not np.array_equal(fresh.images, train.images)

    preload_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(UserError, match="test_batch is missing"):
        load_cifar10(tmp_path)  # checked as ever, not served from memory


# --- one trial, forked ------------------------------------------------------------------------
def test_a_warm_trial_is_a_fresh_process_of_its_own_as_a_cold_one_is(small_cifar_dir, tmp_path):
    notes: list[str] = []
    zygote_pool = pool(small_cifar_dir, tmp_path, notes)
    try:
        run_dir = tmp_path / "run"
        trial = Trial(run_dir, config(small_cifar_dir, 200), zygote_pool)
        pid = trial.process.proc.pid
        wait_until(lambda: trial.epochs() >= 1, 300, "the trial's first epoch")
        assert warm_started(pid), notes
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid  # its own session and group
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert ppid == os.getpid()  # the driver's child, as a cold start is
        threads = str(make_slots("cpu")[0].threads)
        cold = [sys.executable, "-m", CHILD_MODULE, str(run_dir), threads, str(os.getpid())]
        assert arguments(pid) == cold  # what ps and pgrep -f show, as for a cold start
        descriptors = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [d for d in descriptors if d.startswith("socket:")]  # not the zygote's

        trial.process.stop()  # SIGTERM to its process group, as the driver stops trials
        assert trial.wait() == 143  # its own SIGTERM handler, as in a cold start
        assert not notes
    finally:
        zygote_pool.close()
    assert not zygotes(os.getpid())


def test_a_trial_whose_zygote_died_starts_cold_and_the_zygote_is_replaced(
    small_cifar_dir, tmp_path
):
    notes: list[str] = []
    zygote_pool = pool(small_cifar_dir, tmp_path, notes)
    try:
        # started, but its command line is the zygote's only once it has exec'd
        wait_until(lambda: len(zygotes(os.getpid())) == 1, 60, "the slot's zygote")
        (first,) = zygotes(os.getpid())
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: first not in zygotes(os.getpid()), 30, "the zygote to die")

        trial = Trial(tmp_path / "run", config(small_cifar_dir, 1), zygote_pool)
        assert not trial.process.warm
        assert trial.wait() == 0 and trial.messages[-1]["type"] == "done"  # no trial lost
        assert len(notes) == 1 and "the trial starts cold" in notes[0]
        (second,) = zygotes(os.getpid())  # a new zygote for the next trial
        assert second != first

        again = Trial(tmp_path / "again", config(small_cifar_dir, 1), zygote_pool)
        assert again.process.warm  # forked by the new one
        assert again.wait() == 0 and again.messages[-1]["type"] == "done"
    finally:
        zygote_pool.close()
    assert not zygotes(os.getpid())


# --- whole studies ----------------------------------------------------------------------------
def queue_study(cwd: Path, data: Path, taus: list[float], epochs: int) -> list[str]:
    """A grid over τ queued in ``cwd/study.db`` (to be run by ``bopsweep resume``); the
    configurations' ids, in the grid's order."""
    config = TrialConfig(epochs=epochs, data_dir=str(data), **TINY_SETTINGS)
    spec = grid_study("iso", config, {"tau": taus})
    storage = f"sqlite:///{cwd / 'study.db'}"
    options = DispatchOptions(storage=storage, device="cpu", queue_only=True)
    assert run_study(spec, options, echo=lambda *_: None) == 0
    return [p.config_id for p in expand(spec)]


def running_trials(driver_pid: int, root: Path) -> dict[int, Path]:
    """pid → run folder of the driver's trial processes that have finished an epoch."""
    found = {}
    for pid, argv in command_lines().items():
        if CHILD_MODULE in argv and argv[argv.index(CHILD_MODULE) + 3 :][:1] == [str(driver_pid)]:
            run_dir = Path(argv[argv.index(CHILD_MODULE) + 1])
            if run_dir.parent == root and epochs_in(run_dir) >= 1:
                found[pid] = run_dir
    return found


def resume(cwd: Path) -> subprocess.Popen:
    """``bopsweep resume`` of ``cwd/study.db`` on 2 CPU slots, started and left running."""
    return subprocess.Popen(
        [sys.executable, "-m", "bopsweep", "resume", "study.db", *RESUME],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def torch_loaded(pid: int) -> bool:
    """Whether a live process has torch's library mapped (it imported torch)."""
    return "libtorch" in (Path("/proc") / str(pid) / "maps").read_text()


def test_a_cpu_driver_never_imports_torch_and_its_slots_share_one_zygote(small_cifar_dir, tmp_path):
    ids = queue_study(tmp_path, small_cifar_dir, [1e-9, 1e-8], 200)
    root = study_folder(tmp_path / "study.db", "iso")
    driver = resume(tmp_path)
    try:
        wait_until(lambda: len(running_trials(driver.pid, root)) == 2, 120, "two trials mid-run")
        (zygote,) = zygotes(driver.pid)  # one for both CPU slots
        trials = running_trials(driver.pid, root)
        assert sorted(d.name for d in trials.values()) == sorted(ids)
        assert all(warm_started(pid) and torch_loaded(pid) for pid in trials)
        assert torch_loaded(zygote)
        assert not torch_loaded(driver.pid)  # the driver: seconds and hundreds of MB saved
    finally:
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err


@pytest.mark.slow
def test_warm_trials_that_crash_or_are_killed_leave_their_neighbours_and_slots_untouched(
    small_cifar_dir, tmp_path
):
    epochs = 40
    ids = queue_study(tmp_path, small_cifar_dir, [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4], epochs)
    root = study_folder(tmp_path / "study.db", "iso")
    (root / ids[-1] / "steps.csv").mkdir(parents=True)  # the last one raises on its first epoch
    driver = resume(tmp_path)
    wait_until(lambda: len(zygotes(driver.pid)) == 1, 120, "one zygote for both CPU slots")
    before = set(zygotes(driver.pid))

    # the first two trials (one per slot) die: one killed, one by a segmentation fault
    wait_until(lambda: len(running_trials(driver.pid, root)) == 2, 300, "two trials mid-run")
    victims = running_trials(driver.pid, root)
    for pid in victims:
        assert warm_started(pid)
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    (killed, killed_dir), (crashed, crashed_dir) = sorted(victims.items())
    os.kill(killed, signal.SIGKILL)
    os.kill(crashed, signal.SIGSEGV)

    # the next trials run warm, forked by the same zygote
    wait_until(
        lambda: set(running_trials(driver.pid, root)) - set(victims), 300, "a trial after them"
    )
    later = next(iter(set(running_trials(driver.pid, root)) - set(victims)))
    assert warm_started(later)
    assert set(zygotes(driver.pid)) == before  # the crashes left the zygote alive

    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, err  # failed trials, not retried
    assert not zygotes(driver.pid), "a zygote outlived its driver"
    assert "warm start failed" not in err

    trials = optuna.load_study(study_name="iso", storage=f"sqlite:///{tmp_path / 'study.db'}")
    by_config = {t.user_attrs["config_id"]: t for t in trials.trials}
    assert len(by_config) == len(ids) == len(trials.trials)
    reasons = {
        cid: t.user_attrs.get("fail_reason")
        for cid, t in by_config.items()
        if t.state.name == "FAIL"
    }
    assert reasons[killed_dir.name] == "killed by SIGKILL"
    assert reasons[crashed_dir.name] == "killed by SIGSEGV"
    assert "IsADirectoryError" in reasons[ids[-1]]
    assert len(reasons) == 3
    with sqlite3.connect(tmp_path / "study.db") as conn:
        rows = dict(
            conn.execute("SELECT trial_id, COUNT(*) FROM bopsweep_epochs GROUP BY trial_id")
        )
    complete = [t for t in by_config.values() if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    for t in complete:
        assert rows[trial_id(t)] == epochs
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
    # each slot ran a trial to the end after its trial was killed
    for victim_dir in (killed_dir, crashed_dir):
        victim = by_config[victim_dir.name]
        slot = victim.user_attrs["slot"]
        assert any(
            t.user_attrs["slot"] == slot and t.datetime_start > victim.datetime_start
            for t in complete
        ), slot


class Spy:
    """A display that looks, at each epoch, at how the driver's trial process was started."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.seen: list[tuple[bool, int]] = []  # (forked by a zygote, the driver's zygotes)

    def event(self, kind: str, trial: Any, detail: str = "") -> None:
        if kind == "epoch" and self.driver is not None:
            for r in self.driver.running.values():
                self.seen.append((warm_started(r.proc.proc.pid), len(zygotes(os.getpid()))))

    def note(self, text: str) -> None:
        raise AssertionError(text)

    def wants_update(self) -> bool:
        return False

    def update(self, snapshot: Any) -> None:  # the study's progress, before each trial's end
        pass


@pytest.mark.parametrize("warm", [True, False])
def test_the_driver_forks_its_trials_from_a_zygote_unless_told_to_start_cold(
    small_cifar_dir, tmp_path, warm
):
    """``DispatchOptions.warm_starts`` (``--cold-starts`` sets it False) reaches the driver."""
    spec = grid_study("s", TrialConfig(epochs=1, **TINY_SETTINGS), {"tau": [1e-6]})
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, _ = store.create(spec)
    local = {"data_dir": str(small_cifar_dir), "download": False}
    spy = Spy()
    settings = LoopSettings(warm_starts=warm)
    driver = Driver(store, study, make_slots("cpu"), tmp_path / "ckpt", local, spy, None, settings)
    spy.driver = driver
    driver.queue.enqueue_missing(expand(spec))
    assert driver.run() == 0
    assert spy.seen == [(True, 1)] if warm else [(False, 0)]
    assert study.get_trials()[0].state.name == "COMPLETE"
    assert not zygotes(os.getpid())


def test_a_stack_s_last_words_reach_every_member_s_trial_log(tmp_path):
    """One process runs a stack: what it writes on stderr (here the traceback of a crash) is in
    each member's trial.log, not the first member's alone."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    job = {"stack": [{"config": {"no_such_setting": 1}, "run_dir": str(f)} for f in folders]}
    logs = [f / "trial.log" for f in folders]
    process = TrialProcess(folders[0], make_slots("cpu")[0], job, lambda _: None, None, logs)
    wait_until(lambda: process.proc.poll() is not None, 120, "the stack's process to crash")
    assert process.returncode == 1
    words = "".join(process.last_words())
    assert "no_such_setting" in words
    for log in logs:
        assert log.read_text() == words
