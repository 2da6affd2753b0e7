"""The configuration of one trial: every choice that changes what a training run computes.

A :class:`TrialConfig` is made of plain values (numbers, strings, booleans and schedule dicts),
so it round-trips through JSON, TOML and Optuna's trial params. :meth:`TrialConfig.validate`
turns every mistake into a :class:`~bopsweep.errors.UserError` with one clear line.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bopsweep import defaults as d
from bopsweep.defaults import OPTIMIZER_DEFAULTS, SEED_LIMIT, Init, Norm, Optimizer, values
from bopsweep.errors import UserError
from bopsweep.files import atomic_write_text
from bopsweep.schedules import SCHEDULABLE, Schedule

OPTIMIZERS = values(Optimizer)
NORMS = values(Norm)
INITS = values(Init)
HYPERPARAMETERS = ("gamma", "sigma", "tau")  # of the binary optimizers
# What the members of a stack (``--stack``) share: the architecture, and the data and its order,
# so one forward pass of one batch serves them all. Everything else (optimizer, γ/σ/τ, lr,
# schedules, init, epochs, ...) may differ member by member.
STACK_SHARED = (
    "width",
    "norm",
    "batch_size",
    "seed",
    "data_dir",
    "download",
    "subset",
    "val_subset",
    "augment",
    "device",
)


def stack_key(config: Mapping[str, Any]) -> str:
    """What must be equal for configurations (as dicts) to train in one stack."""
    return json.dumps([config.get(name) for name in STACK_SHARED])


@dataclass(frozen=True)
class TrialConfig:
    """One BinaryNet / CIFAR-10 training run.

    ``gamma``, ``sigma`` and ``tau`` left as ``None`` take the optimizer's defaults
    (:data:`bopsweep.defaults.OPTIMIZER_DEFAULTS`); ``schedules`` maps a name in
    :data:`~bopsweep.schedules.SCHEDULABLE` to a :class:`~bopsweep.schedules.Schedule`.

    ``weight_decay`` and ``two_step`` belong to the latent optimizer (the recipe of Liu et al.,
    How Do Adam and Training Strategies Help BNNs Optimization?, ICML 2021, arXiv:2106.11309):
    classic L2 weight decay on the latent kernels, and two-step training whose first
    ``two_step`` epochs feed the kernels to the forward pass unbinarised
    (:mod:`bopsweep.two_step`).
    """

    optimizer: str = d.OPTIMIZER
    unbiased: bool = False
    gamma: float | None = None
    sigma: float | None = None
    tau: float | None = None
    eps: float = d.EPS
    lr: float = d.LR
    schedules: dict[str, Schedule] = field(default_factory=dict)
    weight_decay: float = d.WEIGHT_DECAY
    two_step: int | None = None
    epochs: int = d.EPOCHS
    batch_size: int = d.BATCH_SIZE
    width: float = d.WIDTH
    norm: str = d.NORM
    init: str = d.INIT
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    val_subset: int | None = None
    augment: bool = True
    compile: bool = False
    device: str = d.DEVICE
    seed: int = d.SEED
    log_every: int = d.LOG_EVERY

    def resolved(self) -> TrialConfig:
        """This config with the optimizer's defaults filled in and every value checked."""
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}"
            )
        filled: dict[str, Any] = {  # replace() takes fields of every type
            k: v for k, v in OPTIMIZER_DEFAULTS[self.optimizer].items() if getattr(self, k) is None
        }
        config = replace(self, **filled)
        config.validate()
        return config

    def validate(self) -> None:
        def rate(name: str) -> None:
            value = getattr(self, name)
            if value is not None and not (_finite(value) and 0 < value <= 1):
                raise UserError(f"{name} must be in (0, 1], got {value}")

        rate("gamma")
        rate("sigma")
        if self.tau is not None and not (_finite(self.tau) and self.tau >= 0):
            raise UserError(f"tau must be >= 0, got {self.tau}")
        if not (_finite(self.eps) and self.eps > 0):
            raise UserError(f"eps must be > 0, got {self.eps}")
        if not (_finite(self.lr) and self.lr > 0):
            raise UserError(f"lr must be > 0, got {self.lr}")
        if not (_finite(self.width) and self.width > 0):
            raise UserError(f"width must be > 0, got {self.width}")
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        self._check_latent_recipe()
        if not 0 <= self.seed < SEED_LIMIT:
            raise UserError(f"seed must be in [0, 2^32), got {self.seed}")
        _check_memory(self.width, self.batch_size)
        for name in ("subset", "val_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; use one of {', '.join(NORMS)}")
        if self.init not in INITS:
            raise UserError(f"unknown init {self.init!r}; use one of {', '.join(INITS)}")
        for name in self.schedules:
            if name not in SCHEDULABLE:
                raise UserError(f"cannot schedule {name!r}; schedulable: {', '.join(SCHEDULABLE)}")
            if getattr(self, name) is None:
                raise UserError(
                    f"{name} is scheduled but the {self.optimizer} optimizer has no {name}"
                )
            self._check_schedule_range(name)
        check_device(self.device)

    def _check_latent_recipe(self) -> None:
        """Weight decay and two-step training: the latent optimizer's, within the run."""
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"weight-decay must be >= 0, got {self.weight_decay}")
        if self.two_step is not None:
            if self.two_step < 1:
                raise UserError(f"two-step must be >= 1 epoch, got {self.two_step}")
            if self.two_step >= self.epochs:
                raise UserError(
                    f"two-step {self.two_step} must be less than epochs ({self.epochs}): "
                    "step 2 (binary kernels) needs at least one epoch"
                )
        for name, used in (("weight-decay", self.weight_decay > 0), ("two-step", self.two_step)):
            if used and self.optimizer != Optimizer.LATENT:
                raise UserError(
                    f"{name} is for the latent optimizer's real kernels; {self.optimizer} "
                    "trains binary weights (use --optimizer latent)"
                )

    def _check_schedule_range(self, name: str) -> None:
        """The scheduled value stays valid over the whole run (γ, σ in (0, 1], τ >= 0, lr > 0).

        Every schedule is monotone in the step, so its first and last values bound it; only
        when one is out of range is the first epoch that leaves it looked for. A polynomial
        schedule to ``end=0`` over the whole run is valid for γ, σ and lr: the run's last step
        is one short of the decay's end, so the value there is init / steps > 0; one that
        reaches 0 before the run ends is refused (lr = 0 would train nothing).
        """
        schedule, init = self.schedules[name], self.initial(name)
        low, high, what = _RANGES[name]
        closed = what.startswith("[")  # τ may be 0; γ, σ and lr may not

        def valid(epoch: float) -> bool:
            value = schedule.at_epoch(init, epoch, self.epochs)
            return (
                math.isfinite(value)
                and (value > low or (closed and value == low))
                and (value <= high)
            )

        last = self.epochs - 1e-9  # the last step of the run
        if valid(0) and valid(last):
            return
        epoch = next((e for e in range(self.epochs) if not valid(e)), None)
        where = f"epoch {epoch + 1}" if epoch is not None else f"the last epoch ({self.epochs})"
        value = schedule.at_epoch(init, epoch if epoch is not None else last, self.epochs)
        raise UserError(f"{name} leaves {what} in {where} of its schedule (value {value:g})")

    def initial(self, name: str) -> float:
        value = getattr(self, name)
        assert value is not None, f"{name} is not used by {self.optimizer}"
        return float(value)

    # --- plain-value round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict, which deep-copies every value and each
        # schedule: expanding and queueing a 10,000-point grid spent most of its time there
        return {
            f.name: (
                {k: s.to_dict() for k, s in self.schedules.items()}
                if f.name == "schedules"
                else _copied(getattr(self, f.name))
            )
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "trial settings") -> TrialConfig:
        """Build from plain values, checking names and types (``where`` names the source)."""
        values = {name: check_field(name, value, where) for name, value in data.items()}
        return cls(**values)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrialConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read trial config {path} ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} must hold a JSON object of trial settings")
        return cls.from_dict(data, str(path))


# The valid range of each schedulable hyperparameter: (exclusive low, inclusive high, in words)
_RANGES = {
    "gamma": (0.0, 1.0, "(0, 1]"),
    "sigma": (0.0, 1.0, "(0, 1]"),
    "tau": (0.0, math.inf, "[0, inf)"),
    "lr": (0.0, math.inf, "(0, inf)"),
}


def estimated_memory(width: float, batch_size: int) -> float:
    """Bytes a trial needs, roughly: kernels with their gradient, moments and flip masks (6
    floats a weight), and a batch's activations kept for the backward pass (4 floats a value).
    Float arithmetic: a huge width must give a huge number, not a huge integer."""

    def scaled(c: float) -> float:
        return max(1.0, float(round(c * width)))

    c = [scaled(k) for k in (128, 128, 256, 256, 512, 512)]
    hidden = scaled(1024)
    weights = 27 * c[0] + 9 * sum(a * b for a, b in itertools.pairwise(c)) + 9 * c[5] * hidden
    weights += hidden * hidden + hidden * 10
    per_image = 900 * (c[0] + c[1]) + 225 * (c[2] + c[3]) + 49 * (c[4] + c[5]) + 2 * hidden
    return 4.0 * (6 * weights + 4 * batch_size * per_image)


def _check_memory(width: float, batch_size: int) -> None:
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not reported: no check
        return
    need = estimated_memory(width, batch_size)
    if need > available:
        raise UserError(
            f"width {width:g} with batch size {batch_size} needs about {need / 2**30:,.3g} GiB "
            f"(model, optimizer state, activations); this machine has "
            f"{available / 2**30:,.0f} GiB"
        )


def check_device(device: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# How each field reads from a file or the command line.
_FLOATS = {"gamma", "sigma", "tau", "eps", "lr", "weight_decay", "width"}
_INTS = {"epochs", "batch_size", "subset", "val_subset", "seed", "log_every", "two_step"}
_BOOLS = {"unbiased", "download", "augment", "compile"}
FIELDS = tuple(f.name for f in fields(TrialConfig))


def _copied(value: Any) -> Any:
    """A field's value for :meth:`TrialConfig.to_dict`: a plain value as is, others copied."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else copy.deepcopy(value)


def check_field(name: str, value: Any, where: str = "trial settings") -> Any:
    """``value`` for field ``name``, with ints accepted as floats; anything else is refused."""
    if name not in FIELDS:
        raise UserError(f"unknown key {name!r} in {where}; known: {', '.join(FIELDS)}")
    if name == "schedules":
        if not isinstance(value, dict):
            raise UserError(f"schedules in {where} must be a table of NAME = {{kind = ...}}")
        return {
            k: s if isinstance(s, Schedule) else Schedule.from_dict(_table(k, s, where))
            for k, s in value.items()
        }
    if value is None:
        if name in ("gamma", "sigma", "tau", "subset", "val_subset", "data_dir", "two_step"):
            return None
        raise UserError(f"{name} in {where} needs a value")
    if name in _BOOLS:
        ok = isinstance(value, bool)
        kind = "true or false"
    elif name in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    elif name in _FLOATS:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        kind = "a number"
    else:
        ok = isinstance(value, str)
        kind = "a string"
    if not ok:
        raise UserError(f"{name} in {where} must be {kind}, got {value!r}")
    return value


def parse_field(name: str, text: str, where: str = "--set") -> Any:
    """Read ``text`` (from the command line) as a value of field ``name``."""
    if name not in FIELDS or name == "schedules":
        known = ", ".join(f for f in FIELDS if f != "schedules")
        raise UserError(f"unknown key {name!r} in {where}; known: {known}")
    value: Any = text
    try:
        if name in _BOOLS:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = text.lower() in ("true", "1", "yes")
        elif name in _INTS:
            value = int(text)
        elif name in _FLOATS:
            value = float(text)
    except ValueError:
        kind = "true or false" if name in _BOOLS else "an integer" if name in _INTS else "a number"
        raise UserError(f"{name} in {where} must be {kind}, got {text!r}") from None
    return check_field(name, value, where)


def _table(name: str, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"schedule {name!r} in {where} must be a table, got {value!r}")
    return value


def parse_assignments(items: list[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` options (e.g. ``--set sigma=1e-2``) as typed trial settings."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"{option} {item!r} is not KEY=VALUE (e.g. {option} sigma=1e-2)")
        values[key.strip()] = parse_field(key.strip(), text.strip(), option)
    return values
