"""Optuna's samplers and pruners, each a table of name → factory: every choice of ``bopsweep
optuna --sampler`` and ``--pruner`` has its factory here, and a name (of a study file's
``[optuna]``, of a stored search) is known where its table builds it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from bopsweep.defaults import SEED_LIMIT, Choice, Pruner, Sampler
from bopsweep.errors import UserError

# optuna: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    import optuna

C = TypeVar("C", bound=Choice)


def _samplers() -> Any:
    import optuna

    return optuna.samplers


def _pruners() -> Any:
    import optuna

    return optuna.pruners


# Optuna 5's samplers, each from its seed: multivariate, grouped TPE handles the conditional
# space best; the packages Optuna leaves optional (cmaes for CMA-ES, scipy for QMC) are
# bopsweep's own dependencies, so every sampler here can run.
SAMPLERS: dict[Sampler, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    Sampler.TPE: lambda seed: _samplers().TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True
    ),
    Sampler.RANDOM: lambda seed: _samplers().RandomSampler(seed=seed),
    Sampler.CMAES: lambda seed: _samplers().CmaEsSampler(
        seed=seed,
        warn_independent_sampling=False,
        independent_sampler=_samplers().RandomSampler(seed=seed),
    ),
    Sampler.QMC: lambda seed: _samplers().QMCSampler(
        seed=seed, scramble=True, warn_independent_sampling=False
    ),
}
# Optuna's pruners, on per-epoch validation accuracy, each from the trials' epochs.
PRUNERS: dict[Pruner, Callable[[int], optuna.pruners.BasePruner]] = {
    Pruner.NONE: lambda epochs: _pruners().NopPruner(),
    Pruner.MEDIAN: lambda epochs: _pruners().MedianPruner(
        n_startup_trials=2, n_warmup_steps=max(1, epochs // 10)
    ),
    Pruner.HYPERBAND: lambda epochs: _pruners().HyperbandPruner(
        min_resource=1, max_resource=max(1, epochs)
    ),
}


def make_sampler(sampler: Sampler, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler of :data:`SAMPLERS`; the experimental-feature warnings of TPE's options are
    silenced on purpose."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[sampler](seed)


def make_pruner(pruner: Pruner, epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[pruner](epochs)


def named(table: Mapping[C, Any], name: Any, what: str) -> C:
    """The choice of ``table`` (:data:`SAMPLERS` or :data:`PRUNERS`) named ``name``: those it
    builds are the known ones."""
    for choice in table:
        if choice.value == name:
            return choice
    raise UserError(f"unknown {what} {name!r}; use one of {', '.join(c.value for c in table)}")


def check_sampler_seed(seed: Any) -> None:
    """Refuse, before any study is touched, a seed the sampler's random generator would reject."""
    if seed is not None and not (
        isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT
    ):
        raise UserError(f"the sampler seed must be an integer in [0, 2^32), got {seed!r}")
