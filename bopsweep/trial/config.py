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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bopsweep import defaults as d
from bopsweep.defaults import OPTIMIZER_DEFAULTS, Optimizer, values
from bopsweep.errors import UserError
from bopsweep.files import atomic_write_text
from bopsweep.trial import settings
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import FIELDS, SETTINGS, STACK_SHARED

OPTIMIZERS = values(Optimizer)
HYPERPARAMETERS = settings.STUDIED  # γ, σ, τ: the binary optimizers' studied hyperparameters
__all__ = ["FIELDS", "STACK_SHARED", "TrialConfig", "check_field", "parse_field"]


def stack_key(config: Mapping[str, Any]) -> str:
    """What must be equal for configurations (as dicts) to train in one stack."""
    return json.dumps([config.get(name) for name in STACK_SHARED])


@dataclass(frozen=True)
class TrialConfig:
    """One BinaryNet / CIFAR-10 training run.

    ``gamma``, ``sigma`` and ``tau`` left as ``None`` take the optimizer's defaults
    (:data:`bopsweep.defaults.OPTIMIZER_DEFAULTS`); ``schedules`` maps a name in
    :data:`~bopsweep.trial.schedules.SCHEDULABLE` to a :class:`~bopsweep.trial.schedules.Schedule`.

    ``weight_decay`` and ``two_step`` belong to the latent optimizer (the recipe of Liu et al.,
    How Do Adam and Training Strategies Help BNNs Optimization?, ICML 2021, arXiv:2106.11309):
    classic L2 weight decay on the latent kernels, and two-step training whose first
    ``two_step`` epochs feed the kernels to the forward pass unbinarised
    (:mod:`bopsweep.trial.two_step`).
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
        """Every setting within its declared range or choices, then the rules across settings."""
        for name, setting in SETTINGS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if setting.range is not None and not (_finite(value) and setting.range.contains(value)):
                raise UserError(f"{setting.flag} must be {setting.range}, got {value}")
            if setting.choices is not None and value not in values(setting.choices):
                known = ", ".join(values(setting.choices))
                raise UserError(f"unknown {setting.flag} {value!r}; use one of {known}")
        self._check_latent_recipe()
        _check_memory(self.width, self.batch_size)
        for name in self.schedules:
            if name not in settings.SCHEDULABLE:
                known = ", ".join(settings.SCHEDULABLE)
                raise UserError(f"cannot schedule {name!r}; schedulable: {known}")
            if getattr(self, name) is None:
                raise UserError(
                    f"{name} is scheduled but the {self.optimizer} optimizer has no {name}"
                )
            self._check_schedule_range(name)
        check_device(self.device)

    def _check_latent_recipe(self) -> None:
        """Weight decay and two-step training: the latent optimizer's, within the run."""
        if self.two_step is not None and self.two_step >= self.epochs:
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
        valid_range = SETTINGS[name].range
        assert valid_range is not None, f"{name} is schedulable, so it has a range"
        what = valid_range.interval

        def valid(epoch: float) -> bool:
            return valid_range.contains(schedule.at_epoch(init, epoch, self.epochs))

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
    if not settings.check_device(device):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# How each type of setting reads from a file or the command line: the message's word for it
_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


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
    setting = SETTINGS[name]
    if value is None:
        if setting.optional:
            return None
        raise UserError(f"{name} in {where} needs a value")
    if setting.kind is bool:
        ok = isinstance(value, bool)
    elif setting.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif setting.kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UserError(f"{name} in {where} must be {_KIND[setting.kind]}, got {value!r}")
    return value


def parse_field(name: str, text: str, where: str = "--set") -> Any:
    """Read ``text`` (from the command line) as a value of field ``name``."""
    if name not in FIELDS or name == "schedules":
        known = ", ".join(f for f in FIELDS if f != "schedules")
        raise UserError(f"unknown key {name!r} in {where}; known: {known}")
    value: Any = text
    kind = SETTINGS[name].kind
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = text.lower() in ("true", "1", "yes")
        elif kind in (int, float):
            value = kind(text)
    except ValueError:
        raise UserError(f"{name} in {where} must be {_KIND[kind]}, got {text!r}") from None
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
