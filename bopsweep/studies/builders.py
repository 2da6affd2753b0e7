"""Study builders, one per kind: grid (the paper's Fig. 3 ablations), power of ten (§5.1.1),
schedule (Fig. 4) and Optuna searches. Each returns a :class:`~bopsweep.studies.spec.StudySpec`.
"""

from __future__ import annotations

import math
from typing import Any, cast

from bopsweep.defaults import (
    LR_DECAY,
    PAPER_BASE,
    SCHEDULE_FACTOR,
    SEED_LIMIT,
    Optimizer,
    Pruner,
    Sampler,
    values,
)
from bopsweep.errors import UserError
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import HYPERPARAMETERS, TrialConfig, parse_field
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import SETTINGS, SWEEPABLE


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
    factor: float = SCHEDULE_FACTOR,
    variants: list[str] | None = None,
    seeds: int = 1,
    description: str = "",
    lr_every: float | None = None,
) -> StudySpec:
    """Fig. 4: ``param`` scheduled up (×factor) and down (÷factor) against the constant baseline.

    ``exponential``: ×factor or ÷factor every ``every`` epochs (default: 100 of 350, the
    paper's proportion, scaled to the run). ``polynomial``: linearly from the base value to
    base×factor or base÷factor over the whole run. Every arm keeps the base's own schedules
    (e.g. an ``lr`` schedule). ``lr_every``: add one, Adam's learning rate ×0.1
    (:data:`~bopsweep.defaults.LR_DECAY`) every ``lr_every`` epochs, as the reference code's
    Fig. 4 runs do (every 100 epochs; the paper does not say).
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
    if lr_every is not None:
        base = with_lr_decay(base, lr_every)
    if every is None:
        every = max(1.0, round(base.epochs * 100 / 350))
    if kind == "exponential":
        up = Schedule(kind="exponential", rate=factor, every=every)
        down = Schedule(kind="exponential", rate=1 / factor, every=every)
    else:
        value = (
            base.initial(param)
            if getattr(base, param) is not None
            else cast(float, PAPER_BASE[param])  # a float for each of HYPERPARAMETERS
        )
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
        _with(base, optimizer=Optimizer.BOP2.value),
        arms=arms,
        seeds=seeds,
        description=description,
        meta=meta,
    )


def with_lr_decay(base: TrialConfig, every: float) -> TrialConfig:
    """``base`` with Adam's learning rate ×0.1 (:data:`~bopsweep.defaults.LR_DECAY`) every
    ``every`` epochs: the reference code's ``lr_decay`` in its Fig. 4 runs."""
    if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
        raise UserError(f"--lr-every must be a number of epochs > 0, got {every}")
    if "lr" in base.schedules:
        raise UserError("--lr-every: the base point already has an lr schedule")
    lr = Schedule(kind="exponential", rate=LR_DECAY, every=float(every))
    return _with(base, schedules={**base.schedules, "lr": lr})


def optuna_study(
    name: str,
    base: TrialConfig,
    space: Any,
    trials: int,
    sampler: str = Sampler.TPE.value,
    sampler_seed: int | None = None,
    pruner: str = Pruner.NONE.value,
    description: str = "",
    seeds: int = 1,
) -> StudySpec:
    """A search with Optuna over ``space`` (a :class:`~bopsweep.studies.search.SearchSpace`):
    ``trials`` trials in total, however often it is resumed; each configuration trained on
    ``seeds`` seeds and judged by their mean (:mod:`bopsweep.driver.seed_average`)."""
    from bopsweep.studies.search import check_sampler

    if not (isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
        raise UserError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
    check_sampler(sampler, sampler_seed)
    if isinstance(seeds, int) and base.seed + seeds > SEED_LIMIT:  # the last seed run's seed
        raise UserError(f"--seeds {seeds} from seed {base.seed} passes the largest seed 2^32-1")
    if pruner not in values(Pruner):
        raise UserError(f"unknown pruner {pruner!r}; use one of {', '.join(values(Pruner))}")
    meta = {
        "space": space.to_dict(),
        "trials": trials,
        "sampler": sampler,
        "sampler_seed": sampler_seed,
        "pruner": pruner,
        "swept": list(space.ranges),
    }
    return StudySpec(name, "optuna", base, seeds=seeds, description=description, meta=meta)


def parse_axis(name: str, text: str) -> list[Any]:
    """A grid axis given on the command line: comma-separated values of setting ``name``."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise UserError(f"--values for {name} is empty; give comma-separated numbers")
    return [parse_field(name, v, f"--values of {name}") for v in items]


def _with(config: TrialConfig, **changes: Any) -> TrialConfig:
    return TrialConfig.from_dict({**config.to_dict(), **changes})


def base_point(given: dict[str, Any], sets: dict[str, Any] | None = None) -> TrialConfig:
    """The base point of a study: the paper's (§5.1.2, Bop2ndOrder unbiased at its optimum)
    unless trial options (``given``) or ``--set`` values change it; another optimizer starts
    from its own defaults."""
    values: dict[str, Any] = {"unbiased": True, **given}
    if values.get("optimizer", Optimizer.BOP2.value) == Optimizer.BOP2:
        values = {**PAPER_BASE, **values}
    values.update(sets or {})
    return TrialConfig.from_dict(values, "the base point")


def grid_axes(
    base: TrialConfig, params: list[str], values: list[str] | None
) -> dict[str, list[Any]]:
    """The axes of a grid: ``values[i]`` (comma-separated) for ``params[i]``, or, for γ, σ, τ
    without values, two decades each way around the base point (the paper's Fig. 3)."""
    if values is not None and len(values) != len(params):
        raise UserError(
            f"give one --values per --param ({len(params)} --param, {len(values)} --values)"
        )
    axes: dict[str, list[Any]] = {}
    for i, name in enumerate(params):
        if name in axes:
            raise UserError(f"--param {name} given twice")
        if name not in SWEEPABLE:
            what = "cannot sweep" if name in SETTINGS else "unknown --param"
            raise UserError(
                f"{what} {name!r}; sweep gamma, sigma, tau or another "
                f"trial setting ({', '.join(SWEEPABLE)})"
            )
        if values is None:
            centre = getattr(base.resolved(), name) if name in HYPERPARAMETERS else None
            if centre is None:
                raise UserError(f"give --values for {name} (defaults exist for gamma, sigma, tau)")
            axes[name] = decades_around(centre)
        else:
            axes[name] = parse_axis(name, values[i])
    return axes
