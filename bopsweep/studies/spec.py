"""A study's definition: a base configuration, explicit arms × a cartesian grid × seeds, of a
design (:mod:`bopsweep.studies.designs`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from bopsweep.errors import UserError
from bopsweep.trial.config import FIELDS, TrialConfig, check_field
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import SETTINGS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SpecDesign(Protocol):
    """What a spec asks of its design: every design of :mod:`bopsweep.studies.designs` is one
    (declared here, not imported, as the designs build specs)."""

    @property
    def kind(self) -> str: ...

    def to_meta(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StudySpec:
    """A study: a base configuration, explicit arms × a cartesian grid of values × seeds.

    Every design compiles to this form (see :mod:`bopsweep.studies.designs`): a one-factor
    grid is one grid axis, a power-of-ten search several, a schedule study a list of arms.
    ``design`` keeps what its kind adds (the schedule, the search's settings); it is stored as
    the definition's ``kind`` and ``meta``.
    """

    name: str
    design: SpecDesign
    base: TrialConfig
    grid: dict[str, list[Any]] = field(default_factory=dict)
    arms: list[dict[str, Any]] = field(default_factory=list)
    seeds: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UserError(
                f"study name {self.name!r} must start with a letter or digit and hold only "
                "letters, digits, '.', '_' and '-'"
            )
        if not (
            isinstance(self.seeds, int) and not isinstance(self.seeds, bool) and self.seeds >= 1
        ):
            raise UserError(f"seeds must be an integer >= 1, got {self.seeds!r}")
        for name, values in self.grid.items():
            if name not in FIELDS:
                raise UserError(f"unknown key {name!r} in the grid; known: {', '.join(FIELDS)}")
            if not isinstance(values, list) or not values:
                raise UserError(f"grid axis {name!r} needs a non-empty list of values")
            if name == "schedules":
                raise UserError("schedules cannot be a grid axis; use arms")
            if not SETTINGS[name].sweepable:  # its values would make one configuration id
                raise UserError(
                    f"{name} cannot be a grid axis: it says where trials run, not what they "
                    "compute; give it once (e.g. --set or the study's base)"
                )
            for value in values:
                check_field(name, value, f"grid axis {name!r}")
        for arm in self.arms:
            for key, value in arm.items():
                if key != "label":
                    check_field(key, value, f"arm {arm.get('label', '')!r}".strip())

    @property
    def kind(self) -> str:
        """The design's name, as stored and shown."""
        return self.design.kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "base": self.base.to_dict(),
            "grid": self.grid,
            "arms": [_plain_arm(a) for a in self.arms],
            "seeds": self.seeds,
            "description": self.description,
            "meta": self.design.to_meta(),
        }


def _plain_arm(arm: dict[str, Any]) -> dict[str, Any]:
    out = dict(arm)
    if "schedules" in out:
        out["schedules"] = {
            k: s.to_dict() if isinstance(s, Schedule) else s for k, s in out["schedules"].items()
        }
    return out
