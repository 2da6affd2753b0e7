"""The configuration of one trial: every choice that changes what a training run computes.

A :class:`TrialConfig` is made of plain values (numbers, strings, booleans and schedule dicts),
so it round-trips through JSON, TOML and Optuna's trial params. :meth:`TrialConfig.validate`
turns every mistake into a :class:`~bopsweep.errors.UserError` with one clear line.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bopsweep.errors import UserError
from bopsweep.schedules import SCHEDULABLE, Schedule

OPTIMIZERS = ("bop", "bop2", "latent")
NORMS = ("batch", "layer")
INITS = ("glorot", "sign")

# Defaults per optimizer: Bop from Helwegen et al. (2019), Bop2ndOrder at the paper's optimum.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "bop": {"gamma": 1e-4, "tau": 1e-8},
    "bop2": {"gamma": 1e-7, "sigma": 1e-3, "tau": 1e-6},
    "latent": {},
}


@dataclass(frozen=True)
class TrialConfig:
    """One BinaryNet / CIFAR-10 training run.

    ``gamma``, ``sigma`` and ``tau`` left as ``None`` take the optimizer's defaults
    (:data:`OPTIMIZER_DEFAULTS`); ``schedules`` maps a name in
    :data:`~bopsweep.schedules.SCHEDULABLE` to a :class:`~bopsweep.schedules.Schedule`.
    """

    optimizer: str = "bop2"
    unbiased: bool = False
    gamma: float | None = None
    sigma: float | None = None
    tau: float | None = None
    eps: float = 1e-10
    lr: float = 0.01
    schedules: dict[str, Schedule] = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 100
    width: float = 1.0
    norm: str = "batch"
    init: str = "glorot"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None
    val_subset: int | None = None
    augment: bool = True
    device: str = "auto"
    seed: int = 0
    log_every: int = 10

    def resolved(self) -> TrialConfig:
        """This config with the optimizer's defaults filled in and every value checked."""
        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}"
            )
        filled = {
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
        if self.device != "auto" and not (
            self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")
        ):
            raise UserError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")

    def initial(self, name: str) -> float:
        value = getattr(self, name)
        assert value is not None, f"{name} is not used by {self.optimizer}"
        return float(value)

    # --- plain-value round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schedules"] = {k: s.to_dict() for k, s in self.schedules.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown trial setting(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["schedules"] = {
            k: s if isinstance(s, Schedule) else Schedule.from_dict(s)
            for k, s in (values.get("schedules") or {}).items()
        }
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrialConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read trial config {path} ({e})") from None
        return cls.from_dict(data)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
