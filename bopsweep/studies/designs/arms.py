"""The arms design, a study file's own: explicit ``[[arms]]`` (each a labelled set of
settings), optionally × a ``[grid]``; e.g. the paper's Table 1 and Fig. 5/6 comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bopsweep.errors import UserError
from bopsweep.studies.designs.base import Design, FigureName, FileStudy
from bopsweep.studies.spec import StudySpec


@dataclass(frozen=True)
class ArmsDesign(Design):
    """``swept``: the arms' labels."""

    kind: ClassVar[str] = "arms"
    sections: ClassVar[tuple[str, ...]] = ("arms", "grid")
    figures: ClassVar[tuple[FigureName, ...]] = (
        FigureName.COMPARISON,
        FigureName.PI,
        FigureName.WEIGHTS,
    )

    @classmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        if not file.arms:
            raise UserError(f"a study of kind 'arms' needs [[arms]] tables in {file.where}")
        return StudySpec(
            file.name,
            cls(swept=tuple(a.get("label", f"arm {i}") for i, a in enumerate(file.arms))),
            file.base,
            arms=file.arms,
            grid=file.table("grid"),
            seeds=file.seeds,
            description=file.description,
        )
