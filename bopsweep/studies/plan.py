"""A study's plan: the trials a spec holds, each with a stable id and its Optuna params.

:func:`expand` turns a :class:`~bopsweep.studies.spec.StudySpec` into planned trials; a trial's
id is the hash of everything that changes what it computes (not where it runs: device and data
path are left out).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from bopsweep.defaults import MAX_TRIALS, Init, Norm, Optimizer, ScheduleKind, values, variant_of
from bopsweep.errors import UserError
from bopsweep.studies.config import FIELDS, TrialConfig
from bopsweep.studies.spec import StudySpec

# Settings that say where a trial runs, not what it computes: not part of its identity.
LOCAL_FIELDS = ("device", "data_dir", "download")
# Fields added after studies already existed, left out of a trial's identity at these values, so
# the configurations of those studies keep their ids (and their trials and checkpoints).
LATER_FIELDS: dict[str, Any] = {"weight_decay": 0.0, "two_step": None}
# Always shown as Optuna params (when set), so any Optuna tool can read a bopsweep study.
CORE_PARAMS = ("optimizer", "unbiased", "gamma", "sigma", "tau", "norm", "seed")


@dataclass(frozen=True)
class PlannedTrial:
    config_id: str
    label: str
    config: TrialConfig
    params: dict[str, Any]


def count_trials(spec: StudySpec) -> int:
    """The number of trials ``spec`` plans, computed without expanding it."""
    if spec.kind == "optuna":
        return int(spec.meta["trials"])
    return len(spec.arms or [{}]) * math.prod(len(v) for v in spec.grid.values()) * spec.seeds


def check_size(spec: StudySpec, max_trials: int = MAX_TRIALS) -> None:
    """Refuse a study larger than ``max_trials`` before any of its work is done."""
    n = count_trials(spec)
    if n > max_trials:
        raise UserError(
            f"study {spec.name} has {n:,} trials, more than --max-trials {max_trials:,}; "
            "pass --max-trials N to run it anyway"
        )


def expand(spec: StudySpec, max_trials: int = MAX_TRIALS) -> list[PlannedTrial]:
    """Every trial of the study, in a stable order, validated. (An Optuna study samples its
    trials as it runs: none are planned.) A study over ``max_trials`` is refused first."""
    check_size(spec, max_trials)
    if spec.kind == "optuna":
        return []
    base = spec.base.to_dict()
    axes = list(spec.grid.items())
    combos = list(itertools.product(*(values for _, values in axes))) if axes else [()]
    configs: list[tuple[str, TrialConfig]] = []
    for arm in spec.arms or [{}]:
        overrides = {k: v for k, v in arm.items() if k != "label"}
        for combo in combos:
            point = dict(zip((name for name, _ in axes), combo))
            for i in range(spec.seeds):
                first_seed = point.get("seed", overrides.get("seed", spec.base.seed))
                values = {**base, **overrides, **point, "seed": first_seed + i}
                where = f"study {spec.name}"
                config = TrialConfig.from_dict(values, where).resolved()
                label = " ".join(filter(None, [arm.get("label", ""), _describe(point)]))
                configs.append((label, config))
    varying = _varying([c for _, c in configs])
    planned = [
        PlannedTrial(config_id(c), label, c, trial_params(c, varying)) for label, c in configs
    ]
    seen: dict[str, str] = {}
    for p in planned:
        if p.config_id in seen:
            raise UserError(
                f"study {spec.name} holds the same configuration twice "
                f"({seen[p.config_id] or 'base'} and {p.label or 'base'})"
            )
        seen[p.config_id] = p.label
    return planned


def config_id(config: TrialConfig) -> str:
    """A stable id of what a configuration computes."""
    identity = {
        k: v
        for k, v in config.to_dict().items()
        if k not in LOCAL_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
    }
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def trial_params(config: TrialConfig, varying: set[str]) -> dict[str, Any]:
    """The plain values shown as the Optuna trial's params."""
    data = config.to_dict()
    params = {
        k: data[k]
        for k in FIELDS
        if (k in CORE_PARAMS or k in varying)
        and k not in LOCAL_FIELDS
        and k != "schedules"
        and data[k] is not None
    }
    for name, schedule in config.schedules.items():
        for key, value in schedule.to_dict().items():
            params[f"{name}_schedule" if key == "kind" else f"{name}_schedule_{key}"] = value
    return params


def param_distributions(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna distributions for :func:`trial_params`: single points, or fixed category sets."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    choices: dict[str, tuple[Any, ...]] = {
        "optimizer": values(Optimizer),
        "norm": values(Norm),
        "init": values(Init),
    }
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            out[name] = CategoricalDistribution((False, True))
        elif isinstance(value, str):
            out[name] = CategoricalDistribution(
                choices.get(name, values(ScheduleKind) if name.endswith("_schedule") else (value,))
            )
        elif isinstance(value, int):
            out[name] = IntDistribution(value, value)
        else:
            out[name] = FloatDistribution(value, value)
    return out


def describe_config(config: TrialConfig) -> str:
    """A short label: variant, norm, hyperparameters and their schedules."""
    parts = [variant_of(config.optimizer, config.unbiased), config.norm]
    for name, symbol in (("gamma", "γ"), ("sigma", "σ"), ("tau", "τ")):
        value = getattr(config, name)
        if value is not None:
            parts.append(f"{symbol}={value:.2g}")
            if name in config.schedules:
                parts[-1] += f"({config.schedules[name].kind[:3]})"
    return " ".join(parts)


def _varying(configs: list[TrialConfig]) -> set[str]:
    dicts = [c.to_dict() for c in configs]
    return {k for k in FIELDS if len({json.dumps(d[k], sort_keys=True) for d in dicts}) > 1}


def _describe(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
