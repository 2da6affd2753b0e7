"""Optuna search studies: a search space over γ, σ, τ, the optimizer variant, the norm and
per-hyperparameter schedules, and the search's settings as its study keeps them (its sampler
and pruner named in :mod:`bopsweep.studies.samplers`).

The space (defaults: the paper's ablation ranges widened by a decade)::

    variant       bop | bop2-biased | bop2-unbiased
    norm          batch | layer
    gamma         log-uniform 1e-10 … 1e-4      (bop: the same range)
    sigma         log-uniform 1e-6 … 1          (bop2 only)
    tau           log-uniform 1e-9 … 1e-3
    NAME_schedule constant | exponential | polynomial        for NAME in gamma, sigma, tau
      NAME_schedule_rate   log-uniform 0.1 … 10   (exponential only: ×rate …)
      NAME_schedule_every  int log 1 … epochs     (… every that many epochs)
      NAME_schedule_end    log-uniform in NAME's range  (polynomial only, linear to the end)

A parameter is only sampled where it applies (σ for Bop2ndOrder, a schedule's own parameters
for that schedule kind), so Optuna records conditional parameters only on the trials that chose
them. ``fixed`` values remove dimensions (``--fix sigma=1e-3``). A space file is TOML::

    [space]
    gamma = [1e-9, 1e-5]
    variants = ["bop2-biased", "bop2-unbiased"]
    norms = ["batch"]
    schedules = ["constant", "polynomial"]      # for every hyperparameter, or a table per name
    rate = [0.1, 10]
    [space.fixed]
    sigma = 1e-3
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep import defaults
from bopsweep.defaults import (
    OPTIMIZER,
    SEARCH_RANGES,
    Pruner,
    Sampler,
    Variant,
    optimizer_of,
    variant_of,
)
from bopsweep.errors import UserError
from bopsweep.studies.samplers import PRUNERS, SAMPLERS, check_sampler_seed, named
from bopsweep.studies.tables import read_toml
from bopsweep.trial.config import HYPERPARAMETERS, TrialConfig
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import SETTINGS, Range

if TYPE_CHECKING:
    import optuna

# the binary optimizers' variants (the latent baseline has no γ, σ, τ to search)
VARIANTS = (Variant.BOP.value, Variant.BOP2_BIASED.value, Variant.BOP2_UNBIASED.value)
KINDS = defaults.values(defaults.ScheduleKind)
NORMS = defaults.values(defaults.Norm)
_SPACE_KEYS = {"gamma", "sigma", "tau", "variants", "norms", "schedules", "rate", "fixed"}
_FIXABLE = {"variant", "norm", *HYPERPARAMETERS, *(f"{h}_schedule" for h in HYPERPARAMETERS)}


@dataclass(frozen=True)
class SearchSpace:
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(SEARCH_RANGES))
    variants: tuple[str, ...] = VARIANTS
    norms: tuple[str, ...] = NORMS
    schedules: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {h: KINDS for h in HYPERPARAMETERS}
    )
    rate: tuple[float, float] = (0.1, 10.0)
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (lo, hi) in self.ranges.items():
            if name not in HYPERPARAMETERS:
                raise UserError(f"unknown search parameter {name!r}; known: gamma, sigma, tau")
            if not (_positive(lo) and _positive(hi)):
                raise UserError(f"the range of {name} must be positive numbers, got {lo}:{hi}")
            if lo > hi:
                raise UserError(
                    f"the range of {name} is inverted ({lo:g} > {hi:g}); write LOW:HIGH"
                )
            valid = _range(name)
            if not valid.contains(hi):
                raise UserError(
                    f"the range of {name} must stay within {valid.interval}, got {lo:g}:{hi:g}"
                )
        _subset("variants", self.variants, VARIANTS)
        _subset("norms", self.norms, NORMS)
        for name, kinds in self.schedules.items():
            if name not in HYPERPARAMETERS:
                raise UserError(f"unknown schedule parameter {name!r}; known: gamma, sigma, tau")
            _subset(f"schedules of {name}", kinds, KINDS)
        lo, hi = self.rate
        if not (_positive(lo) and _positive(hi) and lo <= hi):
            raise UserError(f"the rate range must be positive and LOW <= HIGH, got {lo}:{hi}")
        for name, value in self.fixed.items():
            if name not in _FIXABLE:
                raise UserError(f"cannot fix {name!r}; fixable: {', '.join(sorted(_FIXABLE))}")
            if name in HYPERPARAMETERS:
                if not (_positive(value) and _range(name).contains(value)):
                    raise UserError(f"--fix {name}={value} is out of range")
            else:  # within the space's own choices: a contradiction would surface mid-study
                own = {"variant": self.variants, "norm": self.norms}
                allowed = own.get(name) or self.schedules.get(name.removesuffix("_schedule"), KINDS)
                if value not in allowed:
                    raise UserError(
                        f"--fix {name}={value} is not one of the space's {', '.join(allowed)}"
                    )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ranges"] = {k: list(v) for k, v in self.ranges.items()}
        data["schedules"] = {k: list(v) for k, v in self.schedules.items()}
        return {**data, "variants": list(self.variants), "norms": list(self.norms),
                "rate": list(self.rate)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(
            ranges={k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()},
            variants=tuple(data["variants"]),
            norms=tuple(data["norms"]),
            schedules={k: tuple(v) for k, v in data["schedules"].items()},
            rate=(float(data["rate"][0]), float(data["rate"][1])),
            fixed=dict(data["fixed"]),
        )


def parse_range(name: str, text: str) -> tuple[float, float]:
    lo_text, sep, hi_text = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(lo_text), float(hi_text)
    except ValueError:
        raise UserError(f"--{name} needs a range LOW:HIGH, e.g. 1e-9:1e-5; got {text!r}") from None


def parse_fixed(items: list[str]) -> dict[str, Any]:
    """``--fix NAME=VALUE`` options."""
    fixed: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep:
            raise UserError(f"--fix {item!r} is not NAME=VALUE (e.g. --fix sigma=1e-3)")
        if name in HYPERPARAMETERS:
            try:
                fixed[name] = float(text)
            except ValueError:
                raise UserError(f"--fix {name} needs a number, got {text!r}") from None
        else:
            fixed[name] = text
    return fixed


def load_space_file(path: Path) -> SearchSpace:
    data = read_toml(path, "space file")
    table = data.get("space", data)
    if not isinstance(table, dict):
        raise UserError(f"space in {path} must be a table ([space]), got {table!r}")
    return space_from_table(table, str(path))


def space_from_table(table: dict[str, Any], where: str) -> SearchSpace:
    unknown = set(table) - _SPACE_KEYS
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(sorted(unknown))} in the space of "
                        f"{where}; known: {', '.join(sorted(_SPACE_KEYS))}")  # fmt: skip
    values: dict[str, Any] = {}
    ranges = dict(SEARCH_RANGES)
    for name in HYPERPARAMETERS:
        if name in table:
            ranges[name] = _pair(name, table[name], where)
    values["ranges"] = ranges
    for key in ("variants", "norms"):
        if key in table:
            values[key] = tuple(_strings(key, table[key], where))
    if "schedules" in table:
        s = table["schedules"]
        if isinstance(s, dict):
            values["schedules"] = {
                h: tuple(_strings(f"schedules.{h}", s.get(h, list(KINDS)), where))
                for h in HYPERPARAMETERS
            }
            unknown = set(s) - set(HYPERPARAMETERS)
            if unknown:
                raise UserError(f"unknown parameter(s) {', '.join(sorted(unknown))} in "
                                f"[space.schedules] of {where}")  # fmt: skip
        else:
            kinds = tuple(_strings("schedules", s, where))
            values["schedules"] = {h: kinds for h in HYPERPARAMETERS}
    if "rate" in table:
        values["rate"] = _pair("rate", table["rate"], where)
    if "fixed" in table:
        if not isinstance(table["fixed"], dict):
            raise UserError(f"[space.fixed] in {where} must be a table")
        values["fixed"] = dict(table["fixed"])
    return SearchSpace(**values)


# --- sampling a trial --------------------------------------------------------------------------
def suggest(trial: optuna.Trial, space: SearchSpace, base: TrialConfig) -> TrialConfig:
    """Sample one configuration from ``space`` around ``base`` (conditional parameters only
    where they apply) and return it, validated."""
    values = base.to_dict()
    fixed = space.fixed
    variant = _pick(trial, "variant", space.variants, fixed)
    values["optimizer"], values["unbiased"] = optimizer_of(variant)
    values["norm"] = _pick(trial, "norm", space.norms, fixed)
    used = ("gamma", "tau") if variant == "bop" else HYPERPARAMETERS
    values["sigma"] = None
    schedules: dict[str, Any] = {k: v for k, v in values["schedules"].items() if k == "lr"}
    for name in used:
        lo, hi = space.ranges[name]
        if name in fixed:
            values[name] = float(fixed[name])
        else:
            values[name] = trial.suggest_float(name, lo, hi, log=True)
        kind = _pick(trial, f"{name}_schedule", space.schedules[name], fixed)
        if kind == "exponential":
            every = trial.suggest_int(f"{name}_schedule_every", 1, max(1, base.epochs), log=True)
            low, high = _valid_rates(name, values[name], space.rate, (base.epochs - 1) // every)
            rate = trial.suggest_float(f"{name}_schedule_rate", low, high, log=True)
            schedules[name] = Schedule(kind="exponential", rate=rate, every=every).to_dict()
        elif kind == "polynomial":
            end = trial.suggest_float(f"{name}_schedule_end", lo, hi, log=True)
            schedules[name] = Schedule(kind="polynomial", end=end).to_dict()
    values["schedules"] = schedules
    return TrialConfig.from_dict(values, "the search space").resolved()


def _valid_rates(
    name: str, value: float, rates: tuple[float, float], steps: int
) -> tuple[float, float]:
    """The part of the rate range whose schedule keeps ``name`` valid over ``steps`` staircase
    steps: γ, σ in (0, 1] (above float underflow), τ finite. The range narrows only where a
    sampled rate would leave it (Optuna samples such dynamic ranges as given)."""
    low, high = rates
    if steps < 1:
        return low, high
    margin = 1e-9  # rounding in value·rate^steps must not step over a bound
    valid = _range(name)
    top = min(valid.high, 1e300)  # τ: finite
    ceiling = (math.log(top) - math.log(value)) / steps  # logarithms: top/value may overflow
    if ceiling < math.log(high):
        high = math.exp(ceiling) * (1 - margin)
    floor = (math.log(sys.float_info.min) - math.log(value)) / steps
    if not valid.low_closed and floor > math.log(low):  # τ may decay to 0; γ and σ may not
        low = math.exp(floor) * (1 + margin)
    return low, max(low, high)


def _pick(trial: optuna.Trial, name: str, choices: tuple[str, ...], fixed: dict[str, Any]) -> str:
    if name in fixed:
        if fixed[name] not in choices:
            raise UserError(f"--fix {name}={fixed[name]} is not one of {', '.join(choices)}")
        return fixed[name]
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, list(choices))


# --- the search as its study keeps it ---------------------------------------------------------
@dataclass(frozen=True)
class SearchSettings:
    """An Optuna search as its study keeps it: the space, the study's total of trials (however
    often it is resumed), the sampler, its seed and the pruner. Made by :meth:`checked`."""

    space: SearchSpace
    trials: int
    sampler: Sampler = Sampler.TPE
    sampler_seed: int | None = None
    pruner: Pruner = Pruner.NONE

    @classmethod
    def checked(
        cls, space: SearchSpace, trials: Any, sampler: Any, sampler_seed: Any, pruner: Any
    ) -> SearchSettings:
        """The settings, each refused (one line) before any study is touched if it could not
        run: a total below 1, an unknown sampler or pruner, a seed out of range."""
        if not (isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
            raise UserError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
        chosen = named(SAMPLERS, sampler, "sampler")
        check_sampler_seed(sampler_seed)
        return cls(space, trials, chosen, sampler_seed, named(PRUNERS, pruner, "pruner"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "trials": self.trials,
            "sampler": self.sampler.value,
            "sampler_seed": self.sampler_seed,
            "pruner": self.pruner.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        """The settings of a stored definition (:meth:`to_dict`'s keys, checked present)."""
        try:
            space = SearchSpace.from_dict(data["space"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            what = f"{type(e).__name__}: {e}"
            raise UserError(
                f"the study's definition (bopsweep_spec) holds a search space that cannot be read "
                f"({what})"
            ) from None
        return cls.checked(
            space, data["trials"], data["sampler"], data["sampler_seed"], data["pruner"]
        )


@dataclass(frozen=True)
class Search:
    """What an Optuna study samples from: a space around a base configuration, and its total."""

    space: SearchSpace
    base: TrialConfig
    trials: int
    seeds: int = 1  # runs per configuration, averaged (bopsweep.driver.seed_average)


def _range(name: str) -> Range:
    """The declared valid range of one of γ, σ, τ."""
    valid = SETTINGS[name].range
    assert valid is not None, f"{name} is a studied hyperparameter, so it has a range"
    return valid


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _subset(what: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise UserError(f"{what} of the search space is empty")
    for v in values:
        if v not in allowed:
            raise UserError(f"unknown {what.rstrip('s')} {v!r}; use {', '.join(allowed)}")


def _pair(name: str, value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise UserError(f"{name} in {where} must be [LOW, HIGH], got {value!r}")
    return float(value[0]), float(value[1])


def _strings(name: str, value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{name} in {where} must be a list of strings, got {value!r}")
    return value


def space_for(
    space_file: Path | None,
    ranges: dict[str, str | None],
    fix: list[str],
    given: dict[str, Any],
) -> SearchSpace:
    """The space of ``bopsweep optuna``: a space file (or the default space), its ranges
    replaced by ``ranges`` given as LOW:HIGH, dimensions removed by ``--fix``; a trial option
    that names the optimizer or norm fixes that dimension too."""
    space = load_space_file(space_file) if space_file is not None else SearchSpace()
    new_ranges = dict(space.ranges)
    for name, text in ranges.items():
        if text is not None:
            new_ranges[name] = parse_range(name, text)
    fixed = {**space.fixed, **parse_fixed(fix)}
    if "optimizer" in given or "unbiased" in given:
        optimizer = given.get("optimizer", OPTIMIZER)
        fixed["variant"] = variant_of(optimizer, given.get("unbiased", True))
    if "norm" in given:
        fixed["norm"] = given["norm"]
    return replace(space, ranges=new_ranges, fixed=fixed)
