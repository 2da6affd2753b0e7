"""Every sampler of ``bopsweep optuna --sampler`` runs a real search as installed: its package is
one of bopsweep's dependencies (CMA-ES once crashed with "No module named 'cmaes'")."""

from __future__ import annotations

import optuna
import pytest

from bopsweep import defaults
from tests.helpers import TINY, bopsweep, trials


@pytest.mark.slow
@pytest.mark.parametrize("sampler", defaults.values(defaults.Sampler))
def test_each_sampler_runs_a_two_trial_search(sampler, small_cifar_dir, tmp_path):
    """One worker, so the second trial is sampled after the first is complete: that is when
    CMA-ES and QMC sample from their own model (the first trial has nothing to learn from)."""
    args = ["optuna", "--trials", "2", "--sampler", sampler, "--sampler-seed", "0"]
    args += ["--workers", "1", "--epochs", "1", "--data-dir", str(small_cifar_dir), *TINY]
    result = bopsweep(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ts = trials(tmp_path, "optuna-search")
    assert [t.state.name for t in ts] == ["COMPLETE", "COMPLETE"]
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study_attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("optuna-search"))
    if sampler == "cmaes":  # CMA-ES proposed the second trial (it records its generation there)
        assert "cma:generation" in ts[1].system_attrs, ts[1].system_attrs
    if sampler == "qmc":  # QMC drew a point of its sequence (it counts them in the study)
        assert any(key.startswith("qmc:") for key in study_attrs), study_attrs
