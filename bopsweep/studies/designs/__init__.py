"""Study designs, one type each: grid, power of ten, schedule, arms (a study file's own) and
Optuna search. Each carries its builder, how it reads its study-file sections and its stored
definition (and writes the latter back), and the figures it draws; :data:`DESIGNS` finds one
by the kind a definition or a study file names.

* :mod:`~bopsweep.studies.designs.base`: what every design is; the figures' names;
* :mod:`~bopsweep.studies.designs.grid`, :mod:`~bopsweep.studies.designs.pow10`,
  :mod:`~bopsweep.studies.designs.schedule`, :mod:`~bopsweep.studies.designs.arms`,
  :mod:`~bopsweep.studies.designs.optuna_search`: one design each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bopsweep.errors import UserError
from bopsweep.studies.designs.arms import ArmsDesign
from bopsweep.studies.designs.base import STORED, Design, FigureName, FileStudy
from bopsweep.studies.designs.grid import GridDesign, grid_study
from bopsweep.studies.designs.optuna_search import SearchDesign, optuna_study
from bopsweep.studies.designs.pow10 import Pow10Design, parse_pow10_range, pow10_study
from bopsweep.studies.designs.schedule import ScheduleDesign, schedule_study

DESIGNS: dict[str, type[Design]] = {
    d.kind: d for d in (GridDesign, Pow10Design, ScheduleDesign, ArmsDesign, SearchDesign)
}


def design_named(kind: Any, where: str = "") -> type[Design]:
    """The design of ``kind``; another is one line (``where``: " in FILE", for a study file)."""
    if not isinstance(kind, str) or kind not in DESIGNS:
        *others, last = DESIGNS
        raise UserError(f"unknown study kind {kind!r}{where}; use {', '.join(others)} or {last}")
    return DESIGNS[kind]


def stored_design(spec: Mapping[str, Any]) -> Design:
    """The design of a stored definition (its ``kind`` and ``meta``, which another tool may
    have written): one of another shape is one line."""
    meta = spec.get("meta", {})
    if not isinstance(meta, dict):
        raise UserError(f"{STORED} holds meta of {type(meta).__name__}, not dict")
    return design_named(spec.get("kind")).from_meta(meta)


__all__ = [
    "DESIGNS",
    "ArmsDesign",
    "Design",
    "FigureName",
    "FileStudy",
    "GridDesign",
    "Pow10Design",
    "ScheduleDesign",
    "SearchDesign",
    "design_named",
    "grid_study",
    "optuna_study",
    "parse_pow10_range",
    "pow10_study",
    "schedule_study",
    "stored_design",
]
