"""A trial stores only what differs from its study's base configuration, the full configuration
is rebuilt in one place (:func:`bopsweep.store.trial_config.trial_config`), and studies written
the old way (the whole configuration, schedules included, in every trial's ``config``) still
run, resume, re-queue, plot and table.

Real SQLite studies; Optuna's own ``optuna trials`` command reads them as any Optuna user
would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bopsweep.driver.loop import Driver
from bopsweep.driver.study import search_of, stored_spec
from bopsweep.readers.table import group_arms
from bopsweep.store import SPEC_ATTR, Store
from bopsweep.store.trial_config import config_attrs, study_base, trial_config
from bopsweep.studies import (
    StudySpec,
    TrialConfig,
    expand,
    grid_study,
    load_study_file,
    schedule_study,
)
from bopsweep.studies.designs import ArmsDesign
from bopsweep.trial.settings import LOCAL as LOCAL_FIELDS
from tests.helpers import TINY, bopsweep, invoke

GAMMA = 7.246e-10
# a grid whose base schedules Adam's lr and τ: the long part a trial must not repeat
STUDY_FILE = """
[study]
name = "g"
kind = "grid"
seeds = SEEDS

[base]
optimizer = "bop2"
unbiased = true
gamma = 1e-7
sigma = 1e-3
tau = 1e-6
epochs = 1
batch_size = 20
width = 0.0625
subset = 100
val_subset = 50

[base.schedules.lr]
kind = "exponential"
rate = 0.1
every = 100

[base.schedules.tau]
kind = "polynomial"
end = 1e-8

[grid]
gamma = [1e-7, GAMMA]
"""


def study_file(folder: Path, seeds: int) -> Path:
    path = folder / "study.toml"
    path.write_text(STUDY_FILE.replace("SEEDS", str(seeds)).replace("GAMMA", repr(GAMMA)))
    return path


def what_it_computes(config: dict) -> dict:
    """A configuration without the settings that say where it runs (the study's, not a
    trial's)."""
    return {k: v for k, v in config.items() if k not in LOCAL_FIELDS}


def optuna_trials(cwd: Path, study: str) -> list[dict]:
    """``optuna trials -f json``: Optuna's own command line."""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "trials", "--storage",
         "sqlite:///study.db", "--study-name", study, "-f", "json"],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(listed.stdout)


# --- what a trial stores ---------------------------------------------------------------------
def test_a_grid_trial_stores_a_short_difference_and_the_whole_configuration_is_recoverable(
    small_cifar_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = study_file(tmp_path, seeds=2)
    queued = invoke(["run", str(path), "--data-dir", str(small_cifar_dir), "--queue-only", *TINY])
    assert queued.exit_code == 0, queued.output
    rows = optuna_trials(tmp_path, "g")
    assert len(rows) == 4
    deltas = sorted(json.dumps(r["user_attrs"]["config_delta"], sort_keys=True) for r in rows)
    assert deltas == sorted(
        ["{}", '{"seed": 1}', f'{{"gamma": {GAMMA!r}}}', f'{{"gamma": {GAMMA!r}, "seed": 1}}']
    )
    for r in rows:
        assert set(r["user_attrs"]) == {"config_id", "label", "config_delta", "attempt"}
        text = json.dumps(r["user_attrs"])
        assert "schedules" not in text and "polynomial" not in text and len(text) < 160, text

    # the whole configuration: the study's base (stored once) with the trial's difference
    study = optuna.load_study(study_name="g", storage="sqlite:///study.db")
    base = study.user_attrs[SPEC_ATTR]["base"]
    assert base["schedules"]["tau"]["kind"] == "polynomial"
    planned = {p.config_id: p.config.to_dict() for p in expand(load_study_file(path))}
    for r in rows:
        expected = what_it_computes(planned[r["user_attrs"]["config_id"]])
        by_hand = {**base, **r["user_attrs"]["config_delta"]}  # any program can do this
        assert what_it_computes(by_hand) == expected
        frozen = next(t for t in study.trials if t.number == r["number"])
        rebuilt = trial_config(frozen.user_attrs, study_base(study.user_attrs))
        assert what_it_computes(rebuilt) == expected
        assert rebuilt["data_dir"] == base["data_dir"]  # where the study's data is, resolved
        assert base["data_dir"].startswith(str(small_cifar_dir.resolve()))


@pytest.mark.parametrize(
    "spec",
    [
        grid_study("grid", TrialConfig(), {"gamma": [1e-9, 1e-7], "norm": ["batch", "layer"]}),
        schedule_study("sched", TrialConfig(optimizer="bop2", epochs=300), "tau",
                       "exponential", every=100, factor=10.0, variants=["biased", "unbiased"]),
        StudySpec("arms", ArmsDesign(swept=None), TrialConfig(device="cpu", data_dir="/data"),
                  seeds=2, arms=[
            {"label": "Bop", "optimizer": "bop", "gamma": 1e-4, "tau": 1e-8},
            {"label": "latent", "optimizer": "latent", "weight_decay": 5e-6, "two_step": 1,
             "epochs": 2},
        ]),
    ],
    ids=["grid", "schedule", "arms"],
)  # fmt: skip
def test_every_planned_configuration_is_rebuilt_from_its_difference(spec):
    base = study_base({SPEC_ATTR: spec.to_dict()})
    for p in expand(spec):
        full = p.config.to_dict()
        attrs = config_attrs({**full, "device": "cuda:3", "data_dir": "/elsewhere"}, base)
        assert set(attrs["config_delta"]) <= set(full) - set(LOCAL_FIELDS)  # never where it runs
        assert len(attrs["config_delta"]) < len(full)
        rebuilt = trial_config(attrs, base)
        assert what_it_computes(rebuilt) == what_it_computes(full)
        assert {k: rebuilt[k] for k in LOCAL_FIELDS} == {k: base[k] for k in LOCAL_FIELDS}
        old_style = trial_config({"config": full}, base)  # a trial of bopsweep 0.1.0
        assert old_style == rebuilt


def test_a_sampled_trial_stores_its_difference_from_the_stored_base(
    small_cifar_dir, tmp_path, monkeypatch
):
    """The Optuna search samples around the search's base; the trial is stored against, and
    rebuilt from, the base stored in the study: the two agree, and the rebuilt configuration is
    the sampled one."""
    from bopsweep.studies import config_id
    from bopsweep.studies.search import suggest

    monkeypatch.chdir(tmp_path)
    args = ["optuna", "--trials", "3", "--epochs", "1", "--sampler-seed", "0", "--queue-only"]
    queued = invoke([*args, "--data-dir", str(small_cifar_dir), *TINY])
    assert queued.exit_code == 0, queued.output
    spec = stored_spec("sqlite:///study.db", None)
    store = Store("sqlite:///study.db")
    study = store.load(spec.name)
    search = search_of(spec, study, 0)
    assert search is not None
    assert what_it_computes(search.base.to_dict()) == what_it_computes(study_base(study.user_attrs))
    driver = Driver(store, study, [], tmp_path / "ckpt", search=search)
    for _ in range(3):
        t = driver.launcher.sample()
        assert t is not None and "config" not in t.user_attrs
        sampled = suggest(optuna.trial.FixedTrial(t.params), search.space, spec.base)
        assert config_id(sampled) == t.user_attrs["config_id"]
        rebuilt = trial_config(t.user_attrs, study_base(study.user_attrs))
        assert what_it_computes(rebuilt) == what_it_computes(sampled.to_dict())
    assert driver.launcher.sample() is None  # the study's total
    store.engine.dispose()


# --- studies written the old way ---------------------------------------------------------------
def write_old_style(db: Path, path: Path, data_dir: Path) -> StudySpec:
    """A study as bopsweep 0.1.0 queued it: the whole configuration in every trial's
    ``config``, and one trial left RUNNING by a driver that died."""
    from dataclasses import replace

    spec = load_study_file(path)
    spec = replace(spec, base=replace(spec.base, data_dir=str(data_dir), device="cpu"))
    store = Store(f"sqlite:///{db}", create=True)
    study, _ = store.create(spec)
    for p in expand(spec):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING, params=p.params,
                distributions=p.distributions,
                user_attrs={"config_id": p.config_id, "label": p.label,
                            "config": p.config.to_dict(), "attempt": 0},
            )
        )  # fmt: skip
    first = study.trials[0]
    store.storage.set_trial_state_values(first._trial_id, optuna.trial.TrialState.RUNNING)
    store.engine.dispose()
    return spec


def test_a_table_mixes_old_and_new_trials_of_one_configuration(tmp_path):
    """Seed 0 stored the old way, seed 1 the new way: one configuration with two seeds."""
    spec = grid_study("g", TrialConfig(epochs=2), {"gamma": [1e-7, 1e-6]}, seeds=2)
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, _ = store.create(spec)
    base = study_base(study.user_attrs)
    for i, p in enumerate(expand(spec)):
        stored = (
            {"config": p.config.to_dict()}
            if p.config.seed == 0
            else config_attrs(p.config.to_dict(), base)
        )
        study.add_trial(
            optuna.trial.create_trial(
                params=p.params, distributions=p.distributions, value=0.5 + i / 100,
                user_attrs={"config_id": p.config_id, "label": p.label, **stored},
            )
        )  # fmt: skip
    arms = group_arms(study.get_trials(), base)
    assert [sorted(a.final) for a in arms] == [[0, 1], [0, 1]]
    store.engine.dispose()


@pytest.mark.slow
def test_a_study_written_the_old_way_resumes_requeues_tables_and_plots(small_cifar_dir, tmp_path):
    path = study_file(tmp_path, seeds=1)
    write_old_style(tmp_path / "study.db", path, small_cifar_dir)
    resumed = bopsweep(
        "resume", "study.db", "--workers", "2", "--device", "cpu", "--quiet", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "1 resumed after an interruption" in resumed.stdout
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    stale, other, retry = trials
    assert "config" in stale.user_attrs and "config_delta" in retry.user_attrs
    assert "config" in other.user_attrs  # queued the old way, run as it was
    assert retry.user_attrs["config_id"] == stale.user_attrs["config_id"]
    base = study_base(study.user_attrs)
    assert what_it_computes(trial_config(retry.user_attrs, base)) == what_it_computes(
        stale.user_attrs["config"]
    )
    assert retry.user_attrs["config_delta"] == {}  # the base point: γ = 1e-7
    table = bopsweep("table", "study.db", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "gamma=1e-07" in table.stdout and "gamma=7.246e-10" in table.stdout
    plotted = bopsweep("plot", "study.db", "--out", "figs", cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "figs" / "g" / "summary_gamma.png").exists()
    assert (tmp_path / "figs" / "g" / "ablation_gamma.png").exists()
    again = bopsweep("resume", "study.db", "--device", "cpu", "--quiet", cwd=tmp_path)  # all done
    assert again.returncode == 0, again.stderr
    assert (
        len(optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'study.db'}").trials)
        == 3
    )
