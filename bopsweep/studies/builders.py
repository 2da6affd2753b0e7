"""What the study designs' builders (:mod:`bopsweep.studies.designs`) and the study commands
share: the base point, grid axes from the command line, two decades around a value, Adam's
learning-rate decay."""

from __future__ import annotations

import math
from typing import Any

from bopsweep.defaults import (
    LR_DECAY,
    PAPER_BASE,
    Optimizer,
)
from bopsweep.errors import UserError
from bopsweep.trial.config import HYPERPARAMETERS, TrialConfig, parse_field
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import SETTINGS, SWEEPABLE


def decades_around(value: float, below: int = 2, above: int = 2) -> list[float]:
    """``value`` × 10^k for k = −below … above (the paper's ablation: two decades each way)."""
    return [float(f"{value * 10.0**k:.6g}") for k in range(-below, above + 1)]


def with_lr_decay(base: TrialConfig, every: float) -> TrialConfig:
    """``base`` with Adam's learning rate ×0.1 (:data:`~bopsweep.defaults.LR_DECAY`) every
    ``every`` epochs: the reference code's ``lr_decay`` in its Fig. 4 runs."""
    if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
        raise UserError(f"--lr-every must be a number of epochs > 0, got {every}")
    if "lr" in base.schedules:
        raise UserError("--lr-every: the base point already has an lr schedule")
    lr = Schedule(kind="exponential", rate=LR_DECAY, every=float(every))
    return changed(base, schedules={**base.schedules, "lr": lr})


def parse_axis(name: str, text: str) -> list[Any]:
    """A grid axis given on the command line: comma-separated values of setting ``name``."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise UserError(f"--values for {name} is empty; give comma-separated numbers")
    return [parse_field(name, v, f"--values of {name}") for v in items]


def changed(config: TrialConfig, **changes: Any) -> TrialConfig:
    """``config`` with ``changes``, checked."""
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
