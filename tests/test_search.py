"""Optuna search studies: the space, conditional parameters, samplers, pruning and totals."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import optuna
import pytest

from bopsweep.driver import Driver, make_slots, search_of
from bopsweep.errors import UserError
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.studies import TrialConfig, optuna_study
from bopsweep.studies.search import SearchSpace, load_space_file, parse_fixed, suggest
from tests.helpers import (
    TINY,
    assert_attributes_on_record,
    bopsweep,
    epochs_in,
    invoke,
    one_line_error,
    run_dirs,
    start,
    trials,
    wait_until,
)

BASE = TrialConfig(epochs=10)


def sample(space: SearchSpace, n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        suggest(trial, space, BASE)
        study.tell(trial, 0.5)
    return study.trials


def test_conditional_parameters_appear_only_where_they_apply():
    for t in sample(SearchSpace(), 60):
        p = t.params
        assert ("sigma" in p) == (p["variant"] != "bop")
        for name in ("gamma", "sigma", "tau"):
            kind = p.get(f"{name}_schedule")
            assert (f"{name}_schedule_rate" in p) == (kind == "exponential"), p
            assert (f"{name}_schedule_every" in p) == (kind == "exponential"), p
            assert (f"{name}_schedule_end" in p) == (kind == "polynomial"), p
    kinds = {t.params["tau_schedule"] for t in sample(SearchSpace(), 60)}
    assert kinds == {"constant", "exponential", "polynomial"}


def test_sampled_configurations_respect_ranges_and_fixed_values():
    space = SearchSpace(
        ranges={"gamma": (1e-8, 1e-6), "sigma": (1e-4, 1e-2), "tau": (1e-7, 1e-5)},
        fixed=parse_fixed(["sigma=1e-3", "variant=bop2-unbiased", "gamma_schedule=constant"]),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        config = suggest(trial, space, BASE)
        assert config.optimizer == "bop2" and config.unbiased and config.sigma == 1e-3
        assert 1e-8 <= config.gamma <= 1e-6 and 1e-7 <= config.tau <= 1e-5
        assert "gamma" not in config.schedules
        assert "sigma" not in trial.params and "variant" not in trial.params
        study.tell(trial, 0.5)


@pytest.mark.parametrize("epochs", [2, 50, 500])
def test_sampled_schedules_keep_gamma_and_sigma_in_range_over_the_whole_run(epochs):
    """Exponential schedules reach value·rate^(epochs-1): the sampler must never propose one
    that leaves (0, 1] (the configuration would be refused mid-study)."""
    space = SearchSpace(
        ranges={"gamma": (1e-3, 1.0), "sigma": (1e-3, 1.0), "tau": (1e-9, 1e-3)},
        schedules={"gamma": ("exponential",), "sigma": ("exponential",), "tau": ("exponential",)},
        variants=("bop2-biased",),
        rate=(0.01, 100.0),
    )
    base = TrialConfig(epochs=epochs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(300):
        config = suggest(study.ask(), space, base)  # resolved(): raises if out of range
        for name in ("gamma", "sigma"):
            last = config.schedules[name].at_epoch(config.initial(name), epochs - 1, epochs)
            assert 0 < last <= 1


def test_space_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        '[space]\ngamma = [1e-9, 1e-5]\nvariants = ["bop"]\nschedules = ["constant"]\n'
        '[space.fixed]\nnorm = "batch"\n'
    )
    space = load_space_file(path)
    assert space.ranges["gamma"] == (1e-9, 1e-5) and space.variants == ("bop",)
    assert space.schedules["tau"] == ("constant",) and space.fixed == {"norm": "batch"}
    path.write_text("[space]\ngamma = [1e-9, 1e-5]\nlearning_rate = [0.1, 1]\n")
    with pytest.raises(UserError, match=r"unknown parameter.*learning_rate"):
        load_space_file(path)


def first_suggestions(tmp_path, name: str, seed: int | None, n: int = 4, existing: int = 0):
    """The first configurations a driver samples for a fresh Optuna study (no training)."""
    spec = optuna_study(name, TrialConfig(data_dir=str(tmp_path)), SearchSpace(), 50, "tpe", seed)
    store = Store(f"sqlite:///{tmp_path / (name + '.db')}", create=True)
    study, _ = store.create(spec)
    for _ in range(existing):
        study.tell(study.ask(), 0.0)
    driver = Driver(store, study, make_slots("cpu"), tmp_path, search=search_of(spec, study, 0))
    return [driver.launcher.sample().params for _ in range(n)]


def test_the_same_sampler_seed_gives_the_same_first_configurations(tmp_path):
    a = first_suggestions(tmp_path, "a", seed=7)
    b = first_suggestions(tmp_path, "b", seed=7)
    c = first_suggestions(tmp_path, "c", seed=8)
    assert a == b
    assert a != c
    # a resumed study does not draw its first suggestions again
    resumed = first_suggestions(tmp_path, "d", seed=7, existing=2)
    assert resumed[0] != a[0]


@pytest.mark.slow
def test_search_with_two_workers_and_median_pruning_runs_to_its_total(small_cifar_dir, tmp_path):
    args = [
        "optuna",
        "--trials",
        "6",
        "--sampler-seed",
        "0",
        "--pruner",
        "median",
        "--workers",
        "2",
        "--epochs",
        "4",
        "--data-dir",
        str(small_cifar_dir),
        *TINY,
    ]
    result = bopsweep(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ts = trials(tmp_path, "optuna-search")
    assert len(ts) == 6
    assert {t.state.name for t in ts} <= {"COMPLETE", "PRUNED"}
    with sqlite3.connect(tmp_path / "study.db") as conn:
        stored = dict(
            conn.execute("SELECT trial_id, COUNT(*) FROM bopsweep_epochs GROUP BY trial_id")
        )
    for t in ts:
        assert "variant" in t.params and "gamma" in t.params
        if t.state.name == "PRUNED":  # its curve is kept up to where it stopped
            assert stored[trial_id(t)] >= t.user_attrs["pruned_at_epoch"]
            assert t.user_attrs["pruned_at_epoch"] in t.intermediate_values
        else:
            assert stored[trial_id(t)] == 4 and len(t.intermediate_values) == 4
    again = bopsweep(*args, cwd=tmp_path)  # already at its total: nothing more runs
    assert again.returncode == 0 and "6 of 6 trials exist" in again.stdout
    assert len(trials(tmp_path, "optuna-search")) == 6
    assert_attributes_on_record(f"sqlite:///{tmp_path / 'study.db'}")  # pruned trials' too


@pytest.mark.slow
def test_an_interrupted_search_resumes_to_exactly_its_total(small_cifar_dir, tmp_path):
    args = [
        "optuna",
        "--trials",
        "5",
        "--study",
        "s2",
        "--sampler",
        "random",
        "--sampler-seed",
        "3",
        "--workers",
        "2",
        "--epochs",
        "15",
        "--data-dir",
        str(small_cifar_dir),
        *TINY,
    ]
    driver = start(*args, cwd=tmp_path)
    wait_until(
        lambda: sum(epochs_in(d) >= 3 for d in run_dirs(tmp_path, "s2")) >= 2,
        what="two trials mid-run",
    )
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err[-3000:]
    result = bopsweep(
        "resume", "study.db", "--study", "s2", "--workers", "2", "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    ts = trials(tmp_path, "s2")
    counted = [t for t in ts if not t.user_attrs.get("requeued")]
    assert len(counted) == 5 and all(t.state.name == "COMPLETE" for t in counted)
    interrupted = [t for t in ts if t.user_attrs.get("failure") == "interrupted"]
    assert len(interrupted) == 2 and len(ts) == 7
    resumed = [t for t in counted if t.user_attrs["resumed_from_epoch"] > 0]
    assert len(resumed) == 2  # the interrupted ones continued from their checkpoints


# a driver that is killed (SIGKILL) the moment it would queue a retry
KILLED_AT_REQUEUE = """
import os, signal, sys
from bopsweep.driver.queue import TrialQueue
TrialQueue.requeue = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
from bopsweep.cli import app
app(prog_name="bopsweep", args=sys.argv[1:])
"""


@pytest.mark.slow
def test_a_search_driver_killed_before_it_queued_a_retry_loses_no_trial(small_cifar_dir, tmp_path):
    args = ["optuna", "--trials", "2", "--sampler-seed", "0", "--epochs", "15"]
    args += ["--data-dir", str(small_cifar_dir), *TINY]
    driver = subprocess.Popen(
        [sys.executable, "-c", KILLED_AT_REQUEUE, *args], cwd=tmp_path, stderr=subprocess.PIPE
    )
    wait_until(lambda: any(epochs_in(d) >= 2 for d in run_dirs(tmp_path, "optuna-search")))
    driver.send_signal(signal.SIGINT)  # the trial ends as interrupted; its retry is never queued
    driver.communicate(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    (lost,) = trials(tmp_path, "optuna-search")
    assert lost.state.name == "FAIL" and lost.user_attrs["requeued"]

    result = bopsweep("resume", "study.db", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ts = trials(tmp_path, "optuna-search")
    complete = {t.user_attrs["config_id"] for t in ts if t.state.name == "COMPLETE"}
    assert lost.user_attrs["config_id"] in complete and len(complete) == 2
    retry = next(t for t in ts if t.number > lost.number and t.params == lost.params)
    assert retry.user_attrs["resumed_from_epoch"] >= 1  # from the lost trial's checkpoint
    # the failed and the retried trials' attributes too
    assert_attributes_on_record(f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gamma", "1e-4:1e-9"], "the range of gamma is inverted"),
        (["--tau", "0:1e-3"], "the range of tau must be positive"),
        (["--sigma", "-1:0.1"], "the range of sigma must be positive"),
        (["--gamma", "1e-5"], "--gamma needs a range LOW:HIGH"),
        (["--sampler", "grid"], "'grid' is not one of 'tpe', 'random', 'cmaes', 'qmc'"),
        (["--pruner", "asha"], "'asha' is not one of 'none', 'median', 'hyperband'"),
        (["--trials", "0"], "--trials must be an integer >= 1"),
        (["--fix", "alpha=1"], "cannot fix 'alpha'"),
        (["--fix", "variant=adam"], "--fix variant=adam is not one of"),
        (["--fix", "sigma"], "is not NAME=VALUE"),
    ],
)
def test_bad_search_input_gets_one_line_and_exit_2(
    small_cifar_dir, tmp_path, monkeypatch, args, fragment
):
    monkeypatch.chdir(tmp_path)
    result = invoke(["optuna", *args, "--data-dir", str(small_cifar_dir), *TINY])
    one_line_error(result, fragment)


def test_a_space_file_with_an_unknown_parameter_gets_one_line(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.toml").write_text("[space]\nbeta = [0.1, 0.9]\n")
    result = invoke(["optuna", "--space", "space.toml", "--data-dir", str(small_cifar_dir), *TINY])
    one_line_error(result, "unknown parameter(s) beta in the space of space.toml")
