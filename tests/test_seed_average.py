"""Seed-averaged searches (``bopsweep optuna --seeds K``): each sampled configuration trains on
K seeds, and Optuna's value for it (what the sampler learns from) is their mean."""

from __future__ import annotations

import csv
import io
import json
import statistics

import optuna
import pytest

from bopsweep.driver.seed_average import SEED_INDEX, SEED_OF, companion_name
from bopsweep.store.trial_config import study_base, trial_config
from tests.helpers import (
    TINY,
    assert_attributes_on_record,
    bopsweep,
    start,
    trial_processes_in,
    trials,
    wait_until,
)


def runs_and_configurations(cwd, name):
    """The study's seed runs and its companion study's configurations."""
    storage = f"sqlite:///{cwd / 'study.db'}"
    study = optuna.load_study(study_name=name, storage=storage)
    means = optuna.load_study(study_name=companion_name(name), storage=storage)
    return study, means


@pytest.mark.slow
def test_every_sampled_configuration_trains_on_its_seeds_and_is_valued_at_their_mean(
    small_cifar_dir, tmp_path
):
    args = ["optuna", "--trials", "2", "--seeds", "2", "--sampler-seed", "0", "--epochs", "2"]
    args += ["--seed", "5", "--data-dir", str(small_cifar_dir), *TINY]
    result = bopsweep(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, means = runs_and_configurations(tmp_path, "optuna-search")
    base = study_base(study.user_attrs)
    runs = study.trials
    assert len(runs) == 4 and all(t.state.name == "COMPLETE" for t in runs)
    configurations = means.trials
    assert len(configurations) == 2 and all(t.state.name == "COMPLETE" for t in configurations)
    for configuration in configurations:
        mine = [t for t in runs if t.user_attrs[SEED_OF] == configuration.number]
        assert sorted(t.user_attrs[SEED_INDEX] for t in mine) == [0, 1]
        configs = [trial_config(t.user_attrs, base) for t in mine]
        assert sorted(c["seed"] for c in configs) == [5, 6]  # seeds s and s+1
        assert all(t.params == configuration.params for t in mine)  # the same configuration
        without_seed = [{k: v for k, v in c.items() if k != "seed"} for c in configs]
        assert without_seed[0] == without_seed[1]
        # each run's value is its final validation accuracy; the configuration's their mean
        assert all(t.value == t.intermediate_values[2] for t in mine)
        assert configuration.value == pytest.approx(statistics.fmean(t.value for t in mine))
        assert configuration.intermediate_values == pytest.approx(
            {e: statistics.fmean(t.intermediate_values[e] for t in mine) for e in (1, 2)}
        )
    assert means.best_value == max(t.value for t in configurations)
    # status shows each configuration's mean and spread (sample std, as bopsweep table)
    status = bopsweep("status", "study.db", "--format", "json", cwd=tmp_path)
    shown = {c["configuration"]: c for c in json.loads(status.stdout)["configurations"]}
    for configuration in configurations:
        mine = [t.value for t in runs if t.user_attrs[SEED_OF] == configuration.number]
        c = shown[configuration.number]
        assert c["mean"] == configuration.value and sorted(c["seed_values"]) == sorted(mine)
        assert c["std"] == pytest.approx(statistics.stdev(mine))
    table = bopsweep("status", "study.db", cwd=tmp_path)
    assert "mean over their seeds" in table.stdout and "best: configuration" in table.stdout
    # bopsweep table: a configuration is one row of its seed runs, in %, with their spread
    table = bopsweep("table", "study.db", "--format", "csv", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert len(rows) == 2 and all(r["n"] == "2" and r["seeds"] == "5 6" for r in rows)

    def mean_and_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values)

    expected = sorted(
        mean_and_std([100 * t.value for t in runs if t.user_attrs[SEED_OF] == c.number])
        for c in configurations
    )
    shown_rows = sorted((float(r["final_mean"]), float(r["final_std"])) for r in rows)
    assert shown_rows == [pytest.approx(pair) for pair in expected]
    # the total counts configurations: run again, nothing more is sampled
    again = bopsweep(*args, cwd=tmp_path)
    assert again.returncode == 0 and "2 of 2 trials exist" in again.stdout, again.stdout
    assert len(trials(tmp_path, "optuna-search")) == 4
    plan = bopsweep(*args, "--dry-run", cwd=tmp_path)
    assert "2 configurations × 2 seeds = 4 trials in total, 4 exist" in plan.stdout, plan.stdout
    assert "0 trials to train" in plan.stdout
    assert_attributes_on_record(f"sqlite:///{tmp_path / 'study.db'}")  # the companion study's too


# a driver killed (SIGKILL) the moment it would queue a sampled configuration's seed runs
KILLED_AT_QUEUEING = """
import os, signal, sys
import bopsweep.driver.seed_average as seed_average
seed_average.add_waiting_trials = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
from bopsweep.cli import app
app(prog_name="bopsweep", args=sys.argv[1:])
"""


@pytest.mark.slow
def test_a_search_killed_before_it_queued_the_seed_runs_runs_them_on_resume(
    small_cifar_dir, tmp_path
):
    """The sampled configuration whose runs a kill left unqueued gets them at the next start,
    never a new sample in its place; the total still counts configurations."""
    import subprocess
    import sys

    args = ["optuna", "--trials", "2", "--seeds", "2", "--sampler-seed", "1", "--epochs", "1"]
    args += ["--data-dir", str(small_cifar_dir), *TINY]
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_QUEUEING, *args], cwd=tmp_path)
    assert killed.returncode == -9
    _, means = runs_and_configurations(tmp_path, "optuna-search")
    (owed,) = means.trials
    assert owed.state.name == "RUNNING" and not trials(tmp_path, "optuna-search")

    result = bopsweep("resume", "study.db", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, means = runs_and_configurations(tmp_path, "optuna-search")
    assert len(means.trials) == 2 and all(t.state.name == "COMPLETE" for t in means.trials)
    assert means.trials[0].params == owed.params  # the owed one ran, not a replacement
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    # the owed runs were queued as the driver started, before anything new was sampled
    assert [t.user_attrs[SEED_OF] for t in study.trials] == [0, 0, 1, 1]


@pytest.mark.slow
def test_a_seed_run_retried_after_a_kill_stays_its_configurations_and_the_mean_is_told(
    small_cifar_dir, tmp_path
):
    """A retry (its driver killed mid-run, the trial re-queued by resume) continues the same
    seed of the same configuration: the configuration ends with the mean, not RUNNING for ever."""
    args = ["optuna", "--trials", "1", "--seeds", "2", "--sampler-seed", "0", "--epochs", "20"]
    driver = start(*args, "--data-dir", str(small_cifar_dir), *TINY, cwd=tmp_path)

    def a_run_under_way() -> bool:  # an epoch of a seed run stored, the run not finished
        try:
            runs = trials(tmp_path, "optuna-search")
        except Exception:  # the study is not made yet
            return False
        return any(t.state.name == "RUNNING" and t.intermediate_values for t in runs)

    wait_until(a_run_under_way, what="a seed run under way")
    driver.kill()
    driver.communicate()
    # its trial process notices at its next message and exits, leaving the run interrupted
    wait_until(lambda: not trial_processes_in(tmp_path), what="the orphaned trial process to exit")
    result = bopsweep("resume", "study.db", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study, means = runs_and_configurations(tmp_path, "optuna-search")
    assert len(study.trials) > 2, "the killed run was queued again, as a new trial"
    assert all(SEED_OF in t.user_attrs and SEED_INDEX in t.user_attrs for t in study.trials)
    (configuration,) = means.trials
    assert configuration.state.name == "COMPLETE", configuration.user_attrs
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs[SEED_INDEX] for t in done) == [0, 1]
    assert configuration.value == pytest.approx(statistics.fmean(t.value for t in done))


@pytest.mark.slow
def test_a_companion_left_by_a_deleted_study_is_not_taken_for_the_new_studys(
    small_cifar_dir, tmp_path
):
    """The study deleted by another tool (its companion left behind), a new search of the
    same name samples and trains its own configurations, and status shows only those."""
    args = ["optuna", "--trials", "1", "--seeds", "2", "--sampler-seed", "0", "--epochs", "1"]
    args += ["--data-dir", str(small_cifar_dir), *TINY]
    assert bopsweep(*args, cwd=tmp_path).returncode == 0
    optuna.delete_study(study_name="optuna-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    again = bopsweep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study, means = runs_and_configurations(tmp_path, "optuna-search")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    (configuration,) = means.trials  # the new search's own, the old one's gone
    assert configuration.state.name == "COMPLETE"
    status = bopsweep("status", "study.db", "--format", "json", cwd=tmp_path)
    [shown] = json.loads(status.stdout)["configurations"]
    assert sorted(shown["seed_runs"]) == sorted(t.number for t in study.trials)


def test_a_seed_run_is_pruned_by_its_configurations_mean_curve_not_its_own(tmp_path):
    """The pruner judges the mean over the K seeds, at the epochs all K have done: one weak
    seed does not prune its configuration, a weak mean does, and the other seed with it once
    the configuration is told PRUNED."""
    from bopsweep.driver.seed_average import SeedAveragedQueue

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = optuna.pruners.ThresholdPruner(lower=0.5)  # prunes a last value below 0.5
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize",
                                pruner=pruner)  # fmt: skip
    queue = SeedAveragedQueue(study, seeds=2)
    lead = queue.means.ask()
    runs = [study.ask() for _ in range(2)]
    for index, run in enumerate(runs):
        for key, value in ((SEED_OF, lead.number), (SEED_INDEX, index), ("config_id", f"c{index}")):
            run.set_user_attr(key, value)
    ids = [run._trial_id for run in runs]

    runs[0].report(0.3, 1)  # alone below the threshold, but its other seed has not run epoch 1
    assert not queue.should_prune(ids[0])
    runs[1].report(0.9, 1)  # mean 0.6
    assert not queue.should_prune(ids[1]) and not queue.should_prune(ids[0])
    companion = optuna.load_study(study_name=companion_name("s"), storage=storage)
    assert companion.trials[0].intermediate_values == {1: pytest.approx(0.6)}
    runs[0].report(0.2, 2)
    runs[1].report(0.4, 2)  # mean 0.3
    assert queue.should_prune(ids[0])
    companion = optuna.load_study(study_name=companion_name("s"), storage=storage)
    assert companion.trials[0].intermediate_values == {1: pytest.approx(0.6), 2: pytest.approx(0.3)}
    queue.means.tell(lead, state=optuna.trial.TrialState.PRUNED)  # as the driver does
    assert queue.should_prune(ids[1])  # the other seed goes with its configuration
