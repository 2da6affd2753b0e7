"""How many trials a sampler needs to get within 1 % of the best of a full power-of-ten grid.

The objective is cheap and synthetic (a smooth bump in log γ, log σ, log τ with its peak at the
paper's optimum, plus penalties for the other choices), but every trial goes through the same
code as a real search: :func:`bopsweep.studies.search.suggest` on the study's space, with the
sampler from :func:`bopsweep.studies.samplers.make_sampler`.
"""

from __future__ import annotations

import itertools
import math
import statistics

import optuna

from bopsweep.studies import TrialConfig
from bopsweep.studies.samplers import make_sampler
from bopsweep.studies.search import SearchSpace, suggest

PEAK = {"gamma": -7.0, "sigma": -3.0, "tau": -6.0}


def synthetic_accuracy(config: TrialConfig) -> float:
    """A stand-in for final validation accuracy: 0.90 at the paper's optimum."""
    distance = sum(
        (math.log10(getattr(config, k)) - PEAK[k]) ** 2 / (2 if k == "sigma" else 1)
        for k in PEAK
        if getattr(config, k) is not None
    )
    penalty = {"bop": 0.05, "bop2": 0.0}[config.optimizer] + (0.0 if config.unbiased else 0.005)
    penalty += 0.01 * (config.norm == "layer") + 0.002 * len(config.schedules)
    return max(0.1, 0.9 - 0.01 * distance - penalty)


def grid_best(space: SearchSpace, base: TrialConfig) -> tuple[float, int]:
    """Best value and size of the grid of every power of ten (and every variant and norm)."""
    axes = [
        range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)
        for lo, hi in (space.ranges[k] for k in ("gamma", "sigma", "tau"))
    ]
    variants = [space.fixed["variant"]] if "variant" in space.fixed else space.variants
    norms = [space.fixed["norm"]] if "norm" in space.fixed else space.norms
    best, size = -math.inf, 0
    for g, s, t in itertools.product(*axes):
        for variant in variants:
            for norm in norms:
                config = TrialConfig.from_dict(
                    {
                        **base.to_dict(),
                        "optimizer": "bop" if variant == "bop" else "bop2",
                        "unbiased": variant == "bop2-unbiased",
                        "norm": norm,
                        "gamma": 10.0**g,
                        "sigma": None if variant == "bop" else 10.0**s,
                        "tau": 10.0**t,
                    }
                )
                best, size = max(best, synthetic_accuracy(config)), size + 1
    return best, size


def trials_to_reach(
    target: float, space: SearchSpace, base: TrialConfig, sampler: str, seed: int, budget: int = 400
) -> int:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, seed))
    for n in range(1, budget + 1):
        trial = study.ask()
        value = synthetic_accuracy(suggest(trial, space, base))
        study.tell(trial, value)
        if value >= target:
            return n
    return budget + 1


def run(seeds: int = 5) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = TrialConfig(epochs=100)
    spaces = {
        "γ, σ, τ (variant, norm, schedules fixed)": SearchSpace(
            fixed={
                "variant": "bop2-unbiased",
                "norm": "batch",
                "gamma_schedule": "constant",
                "sigma_schedule": "constant",
                "tau_schedule": "constant",
            }
        ),
        "the whole space": SearchSpace(),
    }
    results = {}
    print("\nsearch: trials to get within 1 % of a power-of-ten grid's best (synthetic objective)")
    for name, space in spaces.items():
        best, size = grid_best(space, base)
        row = {"grid_size": size, "grid_best": best}
        for sampler in ("tpe", "random"):
            counts = [trials_to_reach(0.99 * best, space, base, sampler, s) for s in range(seeds)]
            row[sampler] = {"median": statistics.median(counts), "all": counts}
        results[name] = row
        print(
            f"  {name}: grid of {size} trials (best {best:.3f});"
            f" TPE median {row['tpe']['median']} {row['tpe']['all']},"
            f" random median {row['random']['median']} {row['random']['all']}"
        )
    return results


if __name__ == "__main__":
    run()
