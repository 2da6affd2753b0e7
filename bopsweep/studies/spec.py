"""A study's definition: a base configuration, explicit arms × a cartesian grid × seeds, of a
design (:mod:`bopsweep.studies.designs`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bopsweep.errors import UserError
from bopsweep.trial.config import FIELDS, TrialConfig, check_field
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.settings import SETTINGS

if TYPE_CHECKING:
    from bopsweep.studies.designs import Design

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class StudySpec:
    """A study: a base configuration, explicit arms × a cartesian grid of values × seeds.

    Every design compiles to this form (see :mod:`bopsweep.studies.designs`): a one-factor
    grid is one grid axis, a power-of-ten search several, a schedule study a list of arms.
    ``design`` keeps what its kind adds (the schedule, the search's settings); it is stored as
    the definition's ``kind`` and ``meta``.
    """

    name: str
    design: Design
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        """A definition as stored (a study's ``bopsweep_spec``, which another tool may have
        written): one that is not of this shape is one line, never a traceback."""
        # here, not at the top: bopsweep.studies.designs imports this one
        from bopsweep.studies.designs import stored_design

        if not isinstance(data, dict) or not isinstance(data.get("base"), dict):
            raise UserError("the study's definition (bopsweep_spec) holds no base configuration")
        if missing := {"name", "kind"} - set(data):
            raise UserError(f"the study's definition (bopsweep_spec) lacks {sorted(missing)}")
        if unknown := set(data) - _STORED_KEYS:
            raise UserError(f"the study's definition (bopsweep_spec) has unknown {sorted(unknown)}")
        for key, typ in _STORED_TYPES.items():
            value = data.get(key)
            items_ok = not isinstance(value, list) or all(isinstance(a, dict) for a in value)
            if key in data and not (isinstance(value, typ) and items_ok):
                what = f"{type(value).__name__}, not {typ.__name__}" if items_ok else "non-dicts"
                raise UserError(f"the study's definition (bopsweep_spec) holds {key} of {what}")
        values = {k: v for k, v in data.items() if k not in ("kind", "meta")}
        values["base"] = TrialConfig.from_dict(values["base"], "the study's base")
        return cls(design=stored_design(data), **values)


_STORED_KEYS = {"name", "kind", "base", "grid", "arms", "seeds", "description", "meta"}
# what each part of a stored definition is (arms: a list of dicts), checked on reading
_STORED_TYPES: dict[str, type] = {
    "name": str,
    "kind": str,
    "grid": dict,
    "arms": list,
    "description": str,
    "meta": dict,
}


def _plain_arm(arm: dict[str, Any]) -> dict[str, Any]:
    out = dict(arm)
    if "schedules" in out:
        out["schedules"] = {
            k: s.to_dict() if isinstance(s, Schedule) else s for k, s in out["schedules"].items()
        }
    return out
