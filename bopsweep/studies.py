"""Study definitions: what to run. Grid, power-of-ten, schedule and arms studies, and study files.

Every kind compiles to a :class:`~bopsweep.config.StudySpec` (base × arms × grid × seeds), and
:func:`expand` turns a spec into planned trials, each with a stable id: the hash of everything
that changes what the trial computes (not where it runs: device and data path are left out).

Study files are TOML::

    [study]
    name = "fig3-gamma"
    kind = "grid"            # grid | pow10 | schedule | arms
    description = "..."
    seeds = 1

    [base]                   # any `bopsweep train` setting
    optimizer = "bop2"
    unbiased = true

    [grid]                   # kind = "grid": cartesian product over any settings
    gamma = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]

    [pow10]                  # kind = "pow10": every power of ten in each range
    gamma = "1e-9:1e-5"

    [schedule]               # kind = "schedule": Fig. 4's up / down / constant arms
    param = "tau"
    kind = "exponential"     # or "polynomial"
    every = 100              # epochs between ×factor steps (exponential)
    factor = 10
    variants = ["biased", "unbiased"]

    [[arms]]                 # kind = "arms" (or with a grid: arms × grid)
    label = "Bop"
    optimizer = "bop"
    [arms.schedules.gamma]
    kind = "exponential"
    rate = 0.1
    every = 100
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from bopsweep.config import (
    FIELDS,
    HYPERPARAMETERS,
    INITS,
    NORMS,
    OPTIMIZERS,
    StudySpec,
    TrialConfig,
    parse_field,
)
from bopsweep.errors import UserError
from bopsweep.schedules import KINDS, Schedule

# The paper's base point (§5.1.2): Bop2ndOrder, unbiased, batch norm.
PAPER_BASE = {"gamma": 1e-7, "sigma": 1e-3, "tau": 1e-6}
# Settings that say where a trial runs, not what it computes: not part of its identity.
LOCAL_FIELDS = ("device", "data_dir", "download")
# Always shown as Optuna params (when set), so any Optuna tool can read a bopsweep study.
CORE_PARAMS = ("optimizer", "unbiased", "gamma", "sigma", "tau", "norm", "seed")


@dataclass(frozen=True)
class PlannedTrial:
    config_id: str
    label: str
    config: TrialConfig
    params: dict[str, Any]


# --- builders, one per study kind ------------------------------------------------------------
def decades_around(value: float, below: int = 2, above: int = 2) -> list[float]:
    """``value`` × 10^k for k = −below … above (the paper's ablation: two decades each way)."""
    return [float(f"{value * 10.0**k:.6g}") for k in range(-below, above + 1)]


def grid_study(
    name: str, base: TrialConfig, axes: dict[str, list[Any]], seeds: int = 1, description: str = ""
) -> StudySpec:
    """One-factor ablation (one axis) or the cartesian product of several axes."""
    if not axes:
        raise UserError("a grid study needs at least one --param")
    return StudySpec(
        name,
        "grid",
        base,
        grid=dict(axes),
        seeds=seeds,
        description=description,
        meta={"swept": list(axes)},
    )


def parse_pow10_range(name: str, text: str) -> list[float]:
    """``"1e-9:1e-5"`` → [1e-9, 1e-8, …, 1e-5]; both ends must be powers of ten."""
    lo_text, sep, hi_text = str(text).partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (0 < lo < math.inf and 0 < hi < math.inf):
        raise UserError(
            f"--{name} needs a range LOW:HIGH of positive powers of ten, e.g. "
            f"1e-9:1e-5; got {text!r}"
        )
    exps = []
    for end in (lo, hi):
        exp = round(math.log10(end))
        if not math.isclose(end, 10.0**exp, rel_tol=1e-9):
            raise UserError(f"--{name}: {end:g} is not a power of ten (use e.g. 1e-6)")
        exps.append(exp)
    if exps[0] > exps[1]:
        raise UserError(f"--{name}: the range {text} runs backwards; write LOW:HIGH")
    return [float(f"1e{e}") for e in range(exps[0], exps[1] + 1)]


def pow10_study(
    name: str, base: TrialConfig, ranges: dict[str, str], seeds: int = 1, description: str = ""
) -> StudySpec:
    """Every combination of powers of ten in the ranges (the paper's §5.1.1 search)."""
    if not ranges:
        raise UserError("a pow10 study needs at least one range, e.g. --gamma 1e-9:1e-5")
    axes = {k: parse_pow10_range(k, v) for k, v in ranges.items()}
    return StudySpec(
        name,
        "pow10",
        base,
        grid=axes,
        seeds=seeds,
        description=description,
        meta={"swept": list(axes), "ranges": dict(ranges)},
    )


def schedule_study(
    name: str,
    base: TrialConfig,
    param: str,
    kind: str,
    every: float | None = None,
    factor: float = 10.0,
    variants: list[str] | None = None,
    seeds: int = 1,
    description: str = "",
) -> StudySpec:
    """Fig. 4: ``param`` scheduled up (×factor) and down (÷factor) against the constant baseline.

    ``exponential``: ×factor or ÷factor every ``every`` epochs (default: 100 of 350, the
    paper's proportion, scaled to the run). ``polynomial``: linearly from the base value to
    base×factor or base÷factor over the whole run.
    """
    if param not in HYPERPARAMETERS:
        raise UserError(f"cannot schedule {param!r} in a schedule study; use gamma, sigma or tau")
    if kind not in ("exponential", "polynomial"):
        raise UserError(f"schedule kind must be exponential or polynomial, got {kind!r}")
    if not factor > 1:
        raise UserError(f"--factor must be > 1 (the arms go ×factor and ÷factor), got {factor}")
    variants = variants or ["biased", "unbiased"]
    for v in variants:
        if v not in ("biased", "unbiased"):
            raise UserError(f"unknown variant {v!r}; use biased and/or unbiased")
    if every is None:
        every = max(1.0, round(base.epochs * 100 / 350))
    if kind == "exponential":
        up = Schedule(kind="exponential", rate=factor, every=every)
        down = Schedule(kind="exponential", rate=1 / factor, every=every)
    else:
        value = base.initial(param) if getattr(base, param) is not None else PAPER_BASE[param]
        up = Schedule(kind="polynomial", end=value * factor)
        down = Schedule(kind="polynomial", end=value / factor)
    arms = []
    for variant in variants:
        for direction, schedule in (("constant", None), ("increasing", up), ("decreasing", down)):
            arm: dict[str, Any] = {
                "label": f"{variant} {direction}",
                "unbiased": variant == "unbiased",
            }
            if schedule is not None:
                arm["schedules"] = {**base.schedules, param: schedule}
            arms.append(arm)
    meta = {
        "swept": [param],
        "schedule_param": param,
        "schedule_kind": kind,
        "every": every,
        "factor": factor,
    }
    return StudySpec(
        name,
        "schedule",
        _with(base, optimizer="bop2"),
        arms=arms,
        seeds=seeds,
        description=description,
        meta=meta,
    )


def optuna_study(
    name: str,
    base: TrialConfig,
    space: Any,
    trials: int,
    sampler: str = "tpe",
    sampler_seed: int | None = None,
    pruner: str = "none",
    description: str = "",
) -> StudySpec:
    """A search with Optuna over ``space`` (a :class:`bopsweep.search.SearchSpace`): ``trials``
    trials in total, however often it is resumed."""
    from bopsweep.search import PRUNERS, check_sampler

    if not (isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
        raise UserError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
    check_sampler(sampler, sampler_seed)
    if pruner not in PRUNERS:
        raise UserError(f"unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}")
    meta = {
        "space": space.to_dict(),
        "trials": trials,
        "sampler": sampler,
        "sampler_seed": sampler_seed,
        "pruner": pruner,
        "swept": list(space.ranges),
    }
    return StudySpec(name, "optuna", base, description=description, meta=meta)


# --- study files -------------------------------------------------------------------------------
def load_study_file(path: Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a TOML study file; ``overrides`` (command line) win over [base]."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"study file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read study file {path}: {e}") from None
    where = str(path)
    _only(data, {"study", "base", "grid", "pow10", "schedule", "arms", "optuna", "space"}, where)
    study = _table(data, "study", where)
    _only(study, {"name", "kind", "description", "seeds"}, f"[study] of {where}")
    kind = study.get("kind", "grid")
    name = study.get("name", path.stem)
    seeds = study.get("seeds", 1)
    description = study.get("description", "")
    for key, value, typ in (
        ("name", name, str),
        ("kind", kind, str),
        ("description", description, str),
    ):
        if not isinstance(value, typ):
            raise UserError(f"[study] {key} in {where} must be a string, got {value!r}")
    base_values = {**_table(data, "base", where), **(overrides or {})}
    base = TrialConfig.from_dict(base_values, f"[base] of {where}")
    arms = data.get("arms", [])
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        raise UserError(f"arms in {where} must be an array of tables ([[arms]])")
    if kind == "grid":
        spec = grid_study(name, base, _table(data, "grid", where), seeds, description)
        return StudySpec(**{**spec.__dict__, "arms": arms}) if arms else spec
    if kind == "pow10":
        return pow10_study(name, base, _table(data, "pow10", where), seeds, description)
    if kind == "schedule":
        sched = _table(data, "schedule", where)
        _only(sched, {"param", "kind", "every", "factor", "variants"}, f"[schedule] of {where}")
        if "param" not in sched or "kind" not in sched:
            raise UserError(f"[schedule] in {where} needs param and kind")
        _typed(sched, f"[schedule] of {where}", param=str, kind=str, every=float, factor=float)
        variants = sched.get("variants")
        if variants is not None and not (
            isinstance(variants, list) and all(isinstance(v, str) for v in variants)
        ):
            raise UserError(
                f"variants in [schedule] of {where} must be a list of strings, e.g. "
                f'["biased", "unbiased"]; got {variants!r}'
            )
        return schedule_study(
            name,
            base,
            sched["param"],
            sched["kind"],
            sched.get("every"),
            sched.get("factor", 10.0),
            sched.get("variants"),
            seeds,
            description,
        )
    if kind == "arms":
        if not arms:
            raise UserError(f"a study of kind 'arms' needs [[arms]] tables in {where}")
        return StudySpec(
            name,
            "arms",
            base,
            arms=arms,
            grid=_table(data, "grid", where),
            seeds=seeds,
            description=description,
            meta={"swept": [a.get("label", f"arm {i}") for i, a in enumerate(arms)]},
        )
    if kind == "optuna":
        from bopsweep.search import space_from_table

        opts = _table(data, "optuna", where)
        _only(opts, {"trials", "sampler", "sampler_seed", "pruner"}, f"[optuna] of {where}")
        space = space_from_table(_table(data, "space", where), where)
        return optuna_study(
            name,
            base,
            space,
            opts.get("trials", 50),
            opts.get("sampler", "tpe"),
            opts.get("sampler_seed"),
            opts.get("pruner", "none"),
            description,
        )
    raise UserError(
        f"unknown study kind {kind!r} in {where}; use grid, pow10, schedule, arms or optuna"
    )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"[{key}] in {where} must be a table")
    return value


def _typed(data: dict[str, Any], where: str, **types: type) -> None:
    """Each present key of ``data`` has its type (float accepts integers, never booleans)."""
    for key, typ in types.items():
        if key not in data:
            continue
        value = data[key]
        ok = isinstance(value, (int, float) if typ is float else typ) and not isinstance(
            value, bool
        )
        if not ok:
            kind = "a number" if typ is float else "a string" if typ is str else typ.__name__
            raise UserError(f"{key} in {where} must be {kind}, got {value!r}")


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(sorted(unknown))} in {where}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


# --- expansion ---------------------------------------------------------------------------------
MAX_TRIALS = 10_000  # a study above this needs --max-trials: a typo in a grid costs GPU-months


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
    identity = {k: v for k, v in config.to_dict().items() if k not in LOCAL_FIELDS}
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

    choices: dict[str, tuple[Any, ...]] = {"optimizer": OPTIMIZERS, "norm": NORMS, "init": INITS}
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            out[name] = CategoricalDistribution((False, True))
        elif isinstance(value, str):
            out[name] = CategoricalDistribution(
                choices.get(name, KINDS if name.endswith("_schedule") else (value,))
            )
        elif isinstance(value, int):
            out[name] = IntDistribution(value, value)
        else:
            out[name] = FloatDistribution(value, value)
    return out


def describe_config(config: TrialConfig) -> str:
    """A short label: variant, norm, hyperparameters and their schedules."""
    variant = config.optimizer
    if config.optimizer == "bop2":
        variant += "-unbiased" if config.unbiased else "-biased"
    parts = [variant, config.norm]
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


def _with(config: TrialConfig, **changes: Any) -> TrialConfig:
    return TrialConfig.from_dict({**config.to_dict(), **changes})


def parse_axis(name: str, text: str) -> list[Any]:
    """A grid axis given on the command line: comma-separated values of setting ``name``."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise UserError(f"--values for {name} is empty; give comma-separated numbers")
    return [parse_field(name, v, f"--values of {name}") for v in items]
