"""The distributions a planned study stores with its trials: they describe the study, so Optuna's
importances and optuna-dashboard rank what the study sweeps."""

from __future__ import annotations

import importlib.util
import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from bopsweep.driver.queue import TrialQueue, fit_stored
from bopsweep.store import Store
from bopsweep.store.definitions import differences
from bopsweep.studies import TrialConfig, expand, grid_study, pow10_study, schedule_study
from tests.helpers import TINY, invoke, one_line_error

optuna.logging.set_verbosity(optuna.logging.WARNING)
THREE_EPOCHS = [*TINY, "--epochs", "3"]  # of the tiny trial
GAMMAS = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]


def accuracy(gamma: float, epoch: int = 3) -> float:
    """A synthetic final accuracy that depends on γ alone (best at 1e-7)."""
    return 0.9 - 0.05 * abs(math.log10(gamma) + 7) - 0.01 * (3 - epoch)


def gamma_study(tmp_path: Path, data_dir: Path, *more: str) -> optuna.Study:
    """A one-factor γ study queued by ``bopsweep grid`` (the real path: builders, expand,
    Store.create, TrialQueue.enqueue_missing), its trials then run to COMPLETE by hand."""
    values = ",".join(f"{g:g}" for g in GAMMAS)
    args = ["grid", "--param", "gamma", "--values", values, "--study", "g", "--queue-only"]
    result = invoke([*args, *more, "--data-dir", str(data_dir), *THREE_EPOCHS])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'study.db'}")
    queue = TrialQueue(study)
    while (t := queue.claim()) is not None:
        gamma = t.params["gamma"]
        for epoch in (1, 2, 3):
            queue.report(t._trial_id, epoch, accuracy(gamma, epoch))
        assert queue.tell(t, "COMPLETE", accuracy(gamma))
    return study


def test_a_gamma_ablation_ranks_gamma_first(small_cifar_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = gamma_study(tmp_path, small_cifar_dir, "--seeds", "2")
    assert len(study.trials) == 10 and {t.state.name for t in study.trials} == {"COMPLETE"}
    # PED-ANOVA: Optuna 5's default, as optuna-dashboard and bopsweep status use
    evaluators = [optuna.importance.PedAnovaImportanceEvaluator()]
    if importlib.util.find_spec("sklearn") is not None:  # fANOVA, Optuna 4's default
        evaluators.append(optuna.importance.FanovaImportanceEvaluator(seed=0))
    for evaluator in evaluators:
        with warnings.catch_warnings():  # PED-ANOVA's note on minimisation
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
        assert next(iter(importances)) == "gamma", importances
        assert importances["gamma"] > 0.9, importances
        assert all(v < 0.05 for k, v in importances.items() if k != "gamma"), importances


def test_a_swept_axis_is_log_uniform_over_its_range_and_fixed_ones_single(tmp_path):
    base = TrialConfig(epochs=2, unbiased=True, gamma=1e-7, sigma=1e-3, tau=1e-6)
    planned = expand(grid_study("g", base, {"gamma": GAMMAS}, seeds=3))
    for p in planned:
        d = p.distributions
        assert set(d) == set(p.params)
        assert d["gamma"] == FloatDistribution(1e-9, 1e-5, log=True)
        assert d["sigma"].single() and d["tau"].single() and d["variant"].single()
        assert d["seed"] == IntDistribution(0, 2)
    # power of ten: log even over one decade; a narrow or non-positive axis: uniform
    planned = expand(pow10_study("p", base, {"tau": "1e-7:1e-6"}))
    assert planned[0].distributions["tau"] == FloatDistribution(1e-7, 1e-6, log=True)
    planned = expand(grid_study("w", base, {"width": [0.5, 1.0, 2.0]}))
    assert planned[0].distributions["width"] == FloatDistribution(0.5, 2.0)
    planned = expand(grid_study("e", base, {"epochs": [2, 4]}))
    assert planned[0].distributions["epochs"] == IntDistribution(2, 4)


def test_categoricals_hold_the_values_the_study_uses(tmp_path):
    base = TrialConfig(epochs=2, unbiased=True)
    planned = expand(grid_study("n", base, {"norm": ["layer", "batch"], "augment": [True, False]}))
    d = planned[0].distributions
    assert d["norm"] == CategoricalDistribution(("batch", "layer"))
    assert d["augment"] == CategoricalDistribution((False, True))
    assert d["variant"] == CategoricalDistribution(("bop2-unbiased",))
    assert "optimizer" not in d and "unbiased" not in d  # one param: the search's `variant`
    planned = expand(grid_study("u", base, {"unbiased": [False, True]}))
    assert {p.params["variant"] for p in planned} == {"bop2-biased", "bop2-unbiased"}
    assert planned[0].distributions["variant"] == CategoricalDistribution(
        ("bop2-biased", "bop2-unbiased")
    )
    # a schedule study: the constant arm is `constant`, as the search records it
    planned = expand(schedule_study("s", base, "gamma", "exponential", every=1))
    assert {p.params["gamma_schedule"] for p in planned} == {"constant", "exponential"}
    assert planned[0].distributions["gamma_schedule"] == CategoricalDistribution(
        ("constant", "exponential")
    )
    rates = [p for p in planned if "gamma_schedule_rate" in p.params]
    assert rates[0].distributions["gamma_schedule_rate"] == FloatDistribution(0.1, 10, log=True)


def test_a_study_topped_up_or_queued_by_an_earlier_bopsweep_takes_new_trials(
    small_cifar_dir, tmp_path, monkeypatch
):
    base = TrialConfig(epochs=2, unbiased=True)
    # a wider axis: the same kind of distribution, another range, which Optuna accepts
    narrow = expand(grid_study("g", base, {"gamma": GAMMAS[:3]}))[0].distributions["gamma"]
    wide = expand(grid_study("g", base, {"gamma": GAMMAS}))[0].distributions["gamma"]
    check_distribution_compatibility(narrow, wide)

    def bopsweep_study(name: str) -> optuna.Study:  # its base configuration stored in it
        store = Store(f"sqlite:///{tmp_path / name}", create=True)
        return store.create(grid_study("g", base, {"gamma": GAMMAS}))[0]

    queue = TrialQueue(bopsweep_study("q.db"))
    assert queue.enqueue_missing(expand(grid_study("g", base, {"gamma": GAMMAS[:3]}))) == 3
    assert queue.enqueue_missing(expand(grid_study("g", base, {"gamma": GAMMAS}))) == 2
    # a study queued before: one-point floats, categoricals over every choice
    old = bopsweep_study("old.db")
    old.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params={"optimizer": "bop2", "unbiased": True, "gamma": 1e-9, "norm": "batch"},
            distributions={
                "optimizer": CategoricalDistribution(("bop", "bop2", "latent")),
                "unbiased": CategoricalDistribution((False, True)),
                "gamma": FloatDistribution(1e-9, 1e-9),
                "norm": CategoricalDistribution(("batch", "layer")),
            },
        )
    )
    assert TrialQueue(old).enqueue_missing(expand(grid_study("g", base, {"gamma": GAMMAS}))) == 5
    new = old.trials[-1].distributions
    assert new["norm"] == CategoricalDistribution(("batch", "layer"))
    assert new["gamma"] == FloatDistribution(1e-9, 1e-5)  # the stored log flag, the new range
    with pytest.raises(Exception, match="does not fit"):
        fit_stored(
            {"norm": "layer"},
            {"norm": CategoricalDistribution(("layer",))},
            {"norm": CategoricalDistribution(("batch",))},
        )
    # through the command line, a study may grow (more values, more seeds): its missing trials
    # are queued; any other change of its definition is refused, naming what differs
    monkeypatch.chdir(tmp_path)
    data = str(small_cifar_dir)
    common = ["--param", "gamma", "--study", "g", "--queue-only", "--data-dir", data]
    assert invoke(["grid", *common, "--values", "1e-8,1e-7", *THREE_EPOCHS]).exit_code == 0
    for less in (["--values", "1e-8"], ["--values", "1e-8,1e-6"]):  # a value dropped
        result = invoke(["grid", *common, *less, *THREE_EPOCHS])
        one_line_error(result, "already exists with a different definition")
        assert "--study g-2" in result.output  # a name that is free
    assert invoke(["grid", *common, "--values", "1e-7,1e-8,1e-6", *THREE_EPOCHS]).exit_code == 0
    assert invoke(["grid", *common, "--values", "1e-8,1e-7,1e-6", "--seeds", "2",
                   *THREE_EPOCHS]).exit_code == 0  # fmt: skip
    stored = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(stored.trials) == 6  # 3 values × 2 seeds, each queued once
    assert stored.user_attrs["bopsweep_spec"]["seeds"] == 2  # the grown definition
    one_line_error(invoke(["grid", *common, "--values", "1e-8,1e-7,1e-6", *THREE_EPOCHS]),
                   "seeds: 2 → 1")  # fmt: skip  # fewer seeds: refused
    # what differs is named, as stored → given
    result = invoke(["grid", *common, "--values", "1e-8,1e-7,1e-6", "--seeds", "2", *TINY,
                     "--epochs", "5"])  # fmt: skip
    one_line_error(result, "definition (base.epochs: 3 → 5); it may only grow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_ranks_gamma_first(small_cifar_dir, tmp_path, monkeypatch):
    pytest.importorskip("optuna_dashboard")
    monkeypatch.chdir(tmp_path)
    gamma_study(tmp_path, small_cifar_dir)
    port = _free_port()
    script = Path(sys.executable).with_name("optuna-dashboard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "optuna_dashboard"]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *command,
            f"sqlite:///{tmp_path / 'study.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            f"{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                studies = _get(f"{url}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "optuna-dashboard did not answer in 30 s"
                time.sleep(0.2)
        (summary,) = studies
        assert summary["study_name"] == "g"
        detail = _get(f"{url}/api/studies/{summary['study_id']}")
        trials = detail["trials"]
        assert [t["state"] for t in trials] == ["Complete"] * len(GAMMAS)
        params = {p["name"]: p for p in trials[0]["params"]}
        gamma = params["gamma"]["distribution"]
        assert (gamma["type"], gamma["low"], gamma["high"], gamma["log"]) == (
            "FloatDistribution", 1e-9, 1e-5, True
        )  # fmt: skip
        assert params["variant"]["param_external_value"] == "bop2-unbiased"
        assert [v["step"] for v in trials[0]["intermediate_values"]] == [1, 2, 3]
        assert {p["name"] for p in detail["intersection_search_space"]} >= {"gamma", "variant"}
        (importances,) = _get(f"{url}/api/studies/{summary['study_id']}/param_importances")[
            "param_importances"
        ]
        ranked = sorted(importances, key=lambda i: -i["importance"])
        assert ranked[0]["name"] == "gamma", importances
        assert all(i["importance"] < 0.05 for i in ranked[1:]), importances
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_definitions_differ_as_their_stored_json_does():
    """A setting stored as 1 is not the same as 1.0 or true (the refusal compared JSON text
    before it named differences, and still does); where a field is missing it says so."""
    assert differences({"a": 1}, {"a": 1}) == []
    assert differences({"a": 1}, {"a": 1.0}) == ["a: 1 → 1.0"]
    assert differences({"a": True}, {"a": 1}) == ["a: true → 1"]
    assert differences({"b": {"c": [1, 2]}}, {}) == ["b.c: [1, 2] → (none)"]


def test_a_definition_grows_by_values_seeds_and_wider_ranges_and_in_no_other_way():
    from bopsweep.store.definitions import comparable, grows
    from bopsweep.studies import TrialConfig, grid_study, pow10_study

    base = TrialConfig(epochs=2)

    def grid(values, seeds=1, **changes):
        config = TrialConfig(**{"epochs": 2, **changes})
        spec = grid_study("g", config, {"gamma": values}, seeds=seeds)
        return comparable(spec.to_dict())

    def pow10(lo_hi):
        return comparable(pow10_study("p", base, {"gamma": lo_hi}).to_dict())

    small = grid([1e-8, 1e-7])
    assert grows(small, grid([1e-7, 1e-6, 1e-8]))  # values added, in any order
    assert grows(small, grid([1e-8, 1e-7], seeds=3))
    assert grows(pow10("1e-8:1e-7"), pow10("1e-9:1e-6"))
    assert not grows(pow10("1e-9:1e-6"), pow10("1e-8:1e-7"))
    assert not grows(small, grid([1e-8]))  # a value dropped
    assert not grows(grid([1e-8], seeds=2), grid([1e-8]))  # a seed dropped
    assert not grows(small, grid([1e-8, 1e-7, 1e-6], epochs=3))  # and more epochs
    assert not grows(small, grid([1e-8, 1e-7, 1e-6], unbiased=True))  # another base point
    other_axis = comparable(grid_study("g", base, {"tau": [1e-6]}).to_dict())
    assert not grows(small, other_axis)
