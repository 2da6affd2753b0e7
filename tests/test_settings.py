"""Every trial setting is declared once (bopsweep.trial.settings), and everything that reads,
checks, sweeps, stacks or offers a setting on the command line follows that declaration."""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any

import pytest

from bopsweep.cli.trial_options import TrialOptions
from bopsweep.errors import UserError
from bopsweep.studies.plan import CORE_PARAMS, config_id
from bopsweep.studies.search import SearchSpace
from bopsweep.trial.config import TrialConfig, check_field, parse_field, stack_key
from bopsweep.trial.schedules import SCHEDULABLE, Schedule
from bopsweep.trial.settings import LATER, LOCAL, SETTINGS, STACK_SHARED, STUDIED, Range
from tests.helpers import invoke


def test_the_trial_config_has_exactly_the_declared_settings_in_order_with_their_defaults():
    declared = list(SETTINGS)
    assert [f.name for f in fields(TrialConfig)] == declared
    made = TrialConfig()
    for f in fields(TrialConfig):
        assert f.default is not MISSING or f.default_factory is not MISSING, f.name
        assert getattr(made, f.name) == SETTINGS[f.name].default, f.name


def test_the_command_line_offers_every_declared_option_and_nothing_else():
    offered = {f.name for f in fields(TrialOptions)}  # type: ignore[arg-type]
    assert offered == {n for n, s in SETTINGS.items() if s.option}
    assert {"gamma", "sigma", "tau", "schedules"}.isdisjoint(offered)  # given by their own means


def _just_outside(valid: Range) -> list[float]:
    """Values a range refuses, found independently of Range.contains."""
    out = [math.nan, math.inf]
    out.append(valid.low if not valid.low_closed else valid.low - 1)
    if valid.high != math.inf:
        out.append(valid.high if not valid.high_closed else valid.high * 2)
    return out


def _inside(valid: Range) -> float:
    low = valid.low if valid.low_closed else valid.low + (1e-3 if valid.high <= 1 else 1)
    return min(low, valid.high)


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.range is not None])
def test_each_declared_range_is_what_validation_enforces(name: str):
    setting = SETTINGS[name]
    valid = setting.range
    assert valid is not None
    other: dict[str, Any] = {"optimizer": "latent", "epochs": 100} if name == "two_step" else {}
    if name in ("gamma", "sigma", "tau"):
        other = {"optimizer": "bop2"}
    if name == "weight_decay":
        other = {"optimizer": "latent"}
    kind = setting.kind
    ok = kind(_inside(valid))
    TrialConfig(**{**other, name: ok}).resolved()  # the boundary's inside passes
    for bad in _just_outside(valid):
        if kind is int and not math.isfinite(bad):
            continue
        with pytest.raises(UserError, match=f"^{setting.flag} must be "):
            TrialConfig(**{**other, name: kind(bad)}).resolved()


def test_the_messages_say_the_ranges_as_people_write_them():
    cases = {
        "gamma": "gamma must be in (0, 1], got 2.0",
        "tau": "tau must be >= 0, got -1.0",
        "lr": "lr must be > 0, got 0.0",
        "batch_size": "batch-size must be >= 1, got 0",
        "seed": "seed must be in [0, 2^32), got -1",
    }
    values = {"gamma": 2.0, "tau": -1.0, "lr": 0.0, "batch_size": 0, "seed": -1}
    for name, message in cases.items():
        with pytest.raises(UserError) as e:
            TrialConfig(**{name: values[name]}).resolved()
        assert str(e.value) == message


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.choices is not None])
def test_a_choice_outside_its_declared_choices_is_refused(name: str):
    with pytest.raises(UserError, match=f"unknown {SETTINGS[name].flag} 'nope'; use one of"):
        TrialConfig(**{name: "nope"}).resolved()


@pytest.mark.parametrize("name", [n for n in SETTINGS if n != "schedules"])
def test_files_and_set_read_each_setting_as_its_declared_type(name: str):
    setting = SETTINGS[name]
    sample = {bool: True, int: 3, float: 0.5, str: "batch"}[setting.kind]
    assert check_field(name, sample) == sample
    assert type(parse_field(name, str(sample).lower())) is setting.kind
    wrong = "x" if setting.kind is not str else 3
    with pytest.raises(UserError, match=f"^{name} in trial settings must be"):
        check_field(name, wrong)
    if setting.optional:
        assert check_field(name, None) is None
    else:
        with pytest.raises(UserError, match="needs a value"):
            check_field(name, None)


def test_schedules_may_name_exactly_the_settings_declared_schedulable():
    assert tuple(n for n, s in SETTINGS.items() if s.schedulable) == SCHEDULABLE
    assert set(SCHEDULABLE) == {"gamma", "sigma", "tau", "lr"}
    with pytest.raises(UserError, match="cannot schedule 'eps'"):
        TrialConfig(schedules={"eps": Schedule("exponential", rate=0.5, every=1)}).resolved()


def test_a_schedule_that_leaves_the_declared_range_mid_run_is_refused():
    schedule = Schedule("exponential", rate=10.0, every=1)  # σ = 1e-3 · 10^epoch
    with pytest.raises(UserError, match=r"sigma leaves \(0, 1\] in epoch 5"):
        TrialConfig(optimizer="bop2", epochs=10, schedules={"sigma": schedule}).resolved()


def test_stacks_share_exactly_the_settings_declared_shared():
    base = TrialConfig().to_dict()
    for name, setting in SETTINGS.items():
        if name == "schedules":
            continue
        changed = {**base, name: _another(name, base[name])}
        assert (stack_key(changed) != stack_key(base)) == setting.shared, name
    assert set(STACK_SHARED) >= {"width", "norm", "batch_size", "seed", "data_dir"}


def test_where_a_trial_runs_is_not_part_of_its_identity_and_later_settings_keep_old_ids():
    base = TrialConfig()
    for name in LOCAL:
        assert config_id(TrialConfig(**{**_kwargs(base), name: _another(name, None)})) == (
            config_id(base)
        ), name
    for name, value in LATER.items():
        assert getattr(base, name) == value  # at its old value, the id is the old one
    assert set(LOCAL) == {"device", "data_dir", "download"}
    assert config_id(TrialConfig(width=0.5)) != config_id(base)


def test_the_core_optuna_params_are_the_variant_and_the_declared_core_settings():
    assert CORE_PARAMS == ("variant", "gamma", "sigma", "tau", "norm", "seed")


def test_the_search_space_bounds_come_from_the_declared_ranges():
    assert STUDIED == ("gamma", "sigma", "tau")
    with pytest.raises(UserError, match=r"the range of sigma must stay within \(0, 1\]"):
        SearchSpace(ranges={"sigma": (1e-3, 2.0)})
    SearchSpace(ranges={"tau": (1e-3, 2.0)})  # τ has no ceiling
    with pytest.raises(UserError, match=r"--fix gamma=2\.0 is out of range"):
        SearchSpace(fixed={"gamma": 2.0})


def test_the_help_shows_each_option_s_declared_help_unit_and_default():
    result = invoke(["grid", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in ("epochs", "log_every", "two_step"):
        assert " ".join(SETTINGS[name].help_text().split()) in text, name
    assert "(default: 10 steps)" in text


def _another(name: str, value: Any) -> Any:
    """A valid value of setting ``name`` other than ``value``."""
    named = {
        "device": "cpu" if value != "cpu" else "auto",
        "data_dir": "/elsewhere",
        "norm": "layer" if value != "layer" else "batch",
        "init": "sign" if value != "sign" else "glorot",
        "optimizer": "bop" if value != "bop" else "bop2",
    }
    if name in named:
        return named[name]
    if isinstance(value, bool):
        return not value
    return (value or 0) + 1


def _kwargs(config: TrialConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config)}


@pytest.mark.parametrize("name", ["device", "data_dir", "download", "schedules"])
def test_a_grid_cannot_sweep_a_setting_declared_not_sweepable(name: str, tmp_path):
    """Where a trial runs is not part of its identity: its values would be one trial."""
    assert not SETTINGS[name].sweepable
    result = invoke(
        ["grid", "--param", name, "--values", "a,b", "--storage", f"sqlite:///{tmp_path}/s.db"],
    )
    assert result.exit_code == 2, result.output
    assert f"cannot sweep '{name}'" in result.output
    assert not list(tmp_path.iterdir())  # nothing created


@pytest.mark.parametrize("name", ["gamma", "sigma", "tau", "eps"])
def test_the_standalone_optimizers_refuse_what_the_declared_range_refuses(name: str):
    """bopsweep.optim imports nothing of bopsweep, so it checks its own arguments: the same
    ranges as the declaration."""
    import torch

    from bopsweep.optim import Bop2ndOrder

    valid = SETTINGS[name].range
    assert valid is not None
    kernel = [torch.nn.Parameter(torch.ones(2))]
    for bad in _just_outside(valid):
        if math.isfinite(bad) or bad != bad:  # nan and finite outsiders (inf: τ's range has it)
            with pytest.raises(ValueError, match=f"^{name} must be "):
                Bop2ndOrder(kernel, **{name: bad})
    Bop2ndOrder(kernel, **{name: _inside(valid)})
