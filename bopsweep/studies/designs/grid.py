"""The grid design: a one-factor ablation (the paper's Fig. 3) or the cartesian product of
several axes, over any trial setting; in a study file, ``[grid]`` (with ``[[arms]]``: arms ×
grid)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from bopsweep.errors import UserError
from bopsweep.studies.designs.base import Design, FigureName, FileStudy
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import TrialConfig


@dataclass(frozen=True)
class GridDesign(Design):
    kind: ClassVar[str] = "grid"
    sections: ClassVar[tuple[str, ...]] = ("grid", "arms")
    figures: ClassVar[tuple[FigureName, ...]] = (
        FigureName.SWEEP,
        FigureName.COMPARISON,  # a grid of no numeric axis (e.g. norms) compares its points
        FigureName.PI,
        FigureName.WEIGHTS,
    )

    @classmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        spec = grid_study(file.name, file.base, file.table("grid"), file.seeds, file.description)
        return replace(spec, arms=file.arms) if file.arms else spec


def grid_study(
    name: str, base: TrialConfig, axes: dict[str, list[Any]], seeds: int = 1, description: str = ""
) -> StudySpec:
    """One-factor ablation (one axis) or the cartesian product of several axes."""
    if not axes:
        raise UserError("a grid study needs at least one --param")
    return StudySpec(
        name,
        GridDesign(swept=tuple(axes)),
        base,
        grid=dict(axes),
        seeds=seeds,
        description=description,
    )
