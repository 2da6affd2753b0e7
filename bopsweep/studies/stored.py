"""A study's definition read back from the database (its ``bopsweep_spec`` attribute, which
:meth:`StudySpec.to_dict` wrote, or another tool may have): the spec and its design, or one line
saying what is wrong, never a traceback later on.

Apart from :mod:`~bopsweep.studies.spec` because reading needs the designs, which build specs.
"""

from __future__ import annotations

from typing import Any

from bopsweep.errors import UserError
from bopsweep.studies.designs import stored_design
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import TrialConfig

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


def spec_from_stored(data: Any) -> StudySpec:
    """The :class:`StudySpec` of a stored definition; one not of this shape is one line."""
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
    return StudySpec(design=stored_design(data), **values)
