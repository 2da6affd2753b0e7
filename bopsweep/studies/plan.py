"""A study's plan: the trials a spec holds, each with a stable id and its Optuna params.

:func:`expand` turns a :class:`~bopsweep.studies.spec.StudySpec` into planned trials; a trial's
id is the hash of everything that changes what it computes (not where it runs: device and data
path are left out).

Each trial's params come with distributions that describe the study, computed from the whole
plan (:func:`plan_distributions`), so Optuna's tools (importances, slice and contour plots,
optuna-dashboard) see its design: a swept γ, σ, τ or lr as log-uniform over the axis, a
categorical over the values the study uses, a fixed setting as a single point.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from bopsweep.defaults import (
    MAX_TRIALS,
    Init,
    Norm,
    ScheduleKind,
    Variant,
    values,
    variant_of,
)
from bopsweep.errors import UserError
from bopsweep.studies.designs import SearchDesign
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.settings import FIELDS, LATER, LOCAL, SETTINGS

# optuna: imported where used, as a trial process loads this module

# Always shown as Optuna params (when set), so any Optuna tool can read a bopsweep study. The
# optimizer and its bias correction are one param, ``variant``, named and valued as the Optuna
# search names it (:func:`~bopsweep.defaults.variant_of`): one factor, not three aliases that
# would share its importance; the full configuration is the study's base with the trial's
# ``config_delta`` user attribute (:mod:`bopsweep.store.trial_config`).
FOLDED = ("optimizer", "unbiased")  # shown as ``variant``
CORE_PARAMS = ("variant", *(n for n, s in SETTINGS.items() if s.core and n not in FOLDED))
# A numeric axis of positive values spanning at least this factor is log-uniform (γ, σ, τ, lr
# ablations two decades each way, power-of-ten searches), like the search's ranges.
LOG_SPAN = 10.0
# The order of known choices (Optuna compares categorical distributions choice by choice).
KNOWN_CHOICES: dict[str, tuple[Any, ...]] = {
    "variant": values(Variant),
    "norm": values(Norm),
    "init": values(Init),
}


@dataclass(frozen=True)
class PlannedTrial:
    config_id: str
    label: str
    config: TrialConfig
    params: dict[str, Any]
    distributions: dict[str, Any] = field(default_factory=dict)  # Optuna's, over the whole plan


def count_trials(spec: StudySpec) -> int:
    """The number of trials ``spec`` plans, computed without expanding it (a search: its
    total)."""
    if isinstance(spec.design, SearchDesign):
        return spec.design.settings.trials
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
    if isinstance(spec.design, SearchDesign):
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
    params = _with_constant_schedules([trial_params(c, varying) for _, c in configs])
    distributions = plan_distributions(params)
    planned = [
        PlannedTrial(config_id(c), label, c, p, {k: distributions[k] for k in p})
        for (label, c), p in zip(configs, params)
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


# What a two-step run computes changed in bopsweep 0.3 (AdamBNN's recipe: step 2 from step 1's
# best epoch, nothing clipped, schedules restarting with each step): its configurations get new
# ids, so a run of 0.1's recipe is neither resumed as nor counted for one of these.
TWO_STEP_RECIPE = "adambnn"


def config_id(config: TrialConfig) -> str:
    """A stable id of what a configuration computes."""
    identity = {
        k: v
        for k, v in config.to_dict().items()
        if k not in LOCAL and not (k in LATER and v == LATER[k])
    }
    if config.two_step is not None:
        identity["two_step_recipe"] = TWO_STEP_RECIPE
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def trial_params(config: TrialConfig, varying: set[str]) -> dict[str, Any]:
    """The plain values shown as the Optuna trial's params: ``variant`` (in place of
    ``optimizer`` and ``unbiased``), γ, σ, τ, norm, seed, every other setting the study varies,
    and each schedule's kind and parameters."""
    data = config.to_dict()
    params: dict[str, Any] = {"variant": variant_of(config.optimizer, config.unbiased)}
    params.update(
        {
            k: data[k]
            for k in FIELDS
            if (k in CORE_PARAMS or k in varying)
            and k not in LOCAL
            and k not in FOLDED
            and k != "schedules"
            and data[k] is not None
        }
    )
    for name, schedule in config.schedules.items():
        for key, value in schedule.to_dict().items():
            params[f"{name}_schedule" if key == "kind" else f"{name}_schedule_{key}"] = value
    return params


def plan_distributions(plan: list[dict[str, Any]]) -> dict[str, Any]:
    """Optuna distributions of the params of every trial of a plan, one per name, describing
    the study: strings and booleans categorical over the values used; numbers log-uniform over
    [min, max] when all are positive and span a factor of at least :data:`LOG_SPAN`, uniform
    otherwise (integers: ``IntDistribution``). A setting the study holds fixed is a single point
    or a single choice: ``single()`` in Optuna, so its importance evaluators leave it out of
    their fit and rank it 0.
    """
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    used: dict[str, list[Any]] = {}
    for params in plan:
        for name, value in params.items():
            used.setdefault(name, []).append(value)
    out: dict[str, BaseDistribution] = {}
    for name, seen in used.items():
        if any(isinstance(v, (str, bool)) for v in seen):
            order = KNOWN_CHOICES.get(name) or (
                values(ScheduleKind) if name.endswith("_schedule") else (False, True)
            )
            choices = [c for c in order if c in seen]
            choices += sorted({v for v in seen if v not in choices}, key=repr)
            out[name] = CategoricalDistribution(tuple(choices))
        elif all(isinstance(v, int) for v in seen):
            out[name] = IntDistribution(min(seen), max(seen))
        else:
            lo, hi = float(min(seen)), float(max(seen))
            log = lo > 0 and hi >= LOG_SPAN * lo * (1 - 1e-9)
            out[name] = FloatDistribution(lo, hi, log=log)
    return out


def param_distributions(params: dict[str, Any]) -> dict[str, Any]:
    """Distributions of one trial's params on their own (a plan of one trial: every param a
    single point or choice). A planned trial carries its plan's, in
    :attr:`PlannedTrial.distributions`."""
    return plan_distributions([params])


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


def _with_constant_schedules(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``NAME_schedule = "constant"`` on the trials without a schedule of a name that other
    trials of the plan schedule (a schedule study's constant arm), as the Optuna search records
    it: the schedule kind is then a factor of every trial, and the rate, every and end
    conditional params of the scheduled ones."""
    kinds = sorted({k for params in plan for k in params if k.endswith("_schedule")})
    return [{**params, **{k: "constant" for k in kinds if k not in params}} for params in plan]


def _varying(configs: list[TrialConfig]) -> set[str]:
    dicts = [c.to_dict() for c in configs]
    return {k for k in FIELDS if len({json.dumps(d[k], sort_keys=True) for d in dicts}) > 1}


def _describe(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
