"""Hyperparameter schedules: pure functions of the 0-based training step.

Keras semantics, as in the reference code of Bop2ndOrder (Suarez-Ramirez et al., A Bop and
Beyond, CVPRW 2021, arXiv:2104.05124), evaluated once per batch::

    constant:     value = init
    exponential:  value = init · rate^⌊step / decay_steps⌋        (staircase; smooth: no floor)
    polynomial:   value = end + (init − end) · (1 − min(step, decay_steps)/decay_steps)^power

``rate > 1`` or ``end > init`` give increasing schedules. The decay period is given in epochs
(``every`` for exponential, ``epochs`` for polynomial) and turned into steps with the number of
batches per epoch, so a study reads like the paper: "×0.1 every 100 epochs".

A schedule is written on the command line as ``NAME=KIND(key=value, ...)``::

    gamma=exponential(rate=0.1, every=100)
    tau=polynomial(end=1e-2, epochs=500, power=1)

where ``NAME`` is one of :data:`SCHEDULABLE` and the start value is the hyperparameter's own.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from bopsweep.defaults import ScheduleKind, values
from bopsweep.errors import UserError
from bopsweep.trial import settings

SCHEDULABLE = settings.SCHEDULABLE  # γ, σ, τ and lr
KINDS = values(ScheduleKind)


@dataclass(frozen=True)
class Schedule:
    """A schedule of one hyperparameter. ``init`` is filled from the trial's own value.

    ``every`` (exponential) and ``epochs`` (polynomial) are in epochs and may be fractional;
    ``epochs=None`` stretches a polynomial schedule over the whole run.
    """

    kind: str = "constant"
    rate: float | None = None
    every: float | None = None
    staircase: bool = True
    end: float | None = None
    epochs: float | None = None
    power: float = 1.0

    def __post_init__(self) -> None:
        for key in ("rate", "every", "end", "epochs", "power"):
            value = getattr(self, key)
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool)
            ):
                raise UserError(f"schedule key {key!r} needs a number, got {value!r}")
            if value is not None and not math.isfinite(value):
                raise UserError(f"schedule key {key!r} must be finite, got {value}")
        if not isinstance(self.staircase, bool):
            raise UserError(
                f"schedule key 'staircase' must be true or false, got {self.staircase!r}"
            )
        if self.kind not in KINDS:
            raise UserError(f"unknown schedule kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "exponential":
            if self.rate is None or not self.rate > 0:
                raise UserError("an exponential schedule needs rate > 0 (e.g. rate=0.1)")
            if self.every is None or not self.every > 0:
                raise UserError("an exponential schedule needs every > 0 epochs (e.g. every=100)")
        if self.kind == "polynomial":
            if self.end is None or not self.end >= 0:
                raise UserError("a polynomial schedule needs end >= 0 (e.g. end=1e-8)")
            if self.epochs is not None and not self.epochs > 0:
                raise UserError("a polynomial schedule needs epochs > 0 (or none: the whole run)")
            if not self.power > 0:
                raise UserError("a polynomial schedule needs power > 0")

    def value(self, init: float, step: int, steps_per_epoch: int, total_epochs: int) -> float:
        """The value in force at 0-based ``step``."""
        if self.kind == "constant":
            return init
        if self.kind == "exponential":
            assert self.rate is not None and self.every is not None
            p = step / (self.every * steps_per_epoch)
            return init * self.rate ** (math.floor(p) if self.staircase else p)
        assert self.end is not None
        decay_steps = (self.epochs if self.epochs is not None else total_epochs) * steps_per_epoch
        frac = 1.0 - min(step, decay_steps) / decay_steps
        return self.end + (init - self.end) * frac**self.power

    def at_epoch(self, init: float, epoch: float, total_epochs: int) -> float:
        """The value at (fractional) ``epoch``, as :meth:`value` gives it at that epoch's first
        step; ``inf`` where it overflows."""
        try:
            return self.value(init, epoch, 1, total_epochs)  # type: ignore[arg-type]
        except OverflowError:
            return math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (no None), for TOML, JSON and Optuna params."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise UserError(
                f"unknown schedule key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        for key in ("rate", "every", "end", "epochs", "power"):
            if key in values:
                values[key] = _number(key, values[key])
        if isinstance(values.get("staircase"), str):  # from the command line
            text = values["staircase"].lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise UserError(f"schedule key 'staircase' must be true or false, got {text!r}")
            values["staircase"] = text in ("true", "1", "yes")
        return cls(**values)


_SPEC = re.compile(r"^\s*(\w+)\s*=\s*(\w+)\s*(?:\((.*)\))?\s*$")


def parse_schedule(spec: str) -> tuple[str, Schedule]:
    """Parse ``NAME=KIND(key=value, ...)`` into the hyperparameter name and its schedule."""
    match = _SPEC.match(spec)
    if not match:
        raise UserError(
            f"cannot read schedule {spec!r}; write NAME=KIND(key=value, ...), "
            "e.g. gamma=exponential(rate=0.1, every=100)"
        )
    name, kind, args = match.group(1), match.group(2), match.group(3) or ""
    if name not in SCHEDULABLE:
        raise UserError(f"cannot schedule {name!r}; schedulable: {', '.join(SCHEDULABLE)}")
    values: dict[str, Any] = {"kind": kind}
    for item in filter(None, (part.strip() for part in args.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"schedule argument {item!r} in {spec!r} is not key=value")
        values[key.strip()] = value.strip()
    return name, Schedule.from_dict(values)


def _number(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"schedule key {key!r} needs a number, got {value!r}") from None
