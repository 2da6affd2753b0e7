"""The power-of-ten design: every combination of powers of ten in ranges of γ, σ, τ (the
paper's §5.1.1 search); in a study file, ``[pow10]`` of ``NAME = "LOW:HIGH"``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from bopsweep.errors import UserError
from bopsweep.studies.designs.base import Design, FigureName, FileStudy, read_meta, stored_swept
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import TrialConfig


@dataclass(frozen=True)
class Pow10Design(Design):
    """``ranges``: as given (LOW:HIGH per setting); None where a stored definition has none."""

    kind: ClassVar[str] = "pow10"
    sections: ClassVar[tuple[str, ...]] = ("pow10",)
    figures: ClassVar[tuple[FigureName, ...]] = (
        FigureName.SWEEP,
        FigureName.PI,
        FigureName.WEIGHTS,
    )

    ranges: dict[str, Any] | None = None

    def to_meta(self) -> dict[str, Any]:
        ranges = {} if self.ranges is None else {"ranges": dict(self.ranges)}
        return {**self.swept_meta(), **ranges}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Pow10Design:
        meta = read_meta(meta, cls.kind, {}, {"swept": list, "ranges": dict})
        return cls(stored_swept(meta), meta.get("ranges"))

    @classmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        return pow10_study(file.name, file.base, file.table("pow10"), file.seeds, file.description)


def parse_pow10_range(name: str, text: str) -> list[float]:
    """``"1e-9:1e-5"`` → [1e-9, 1e-8, …, 1e-5]; both ends must be powers of ten."""
    lo_text, sep, hi_text = str(text).partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (0 < lo < math.inf and 0 < hi < math.inf):
        raise UserError(
            f"--{name} needs a range LOW:HIGH of positive powers of ten, e.g. "
            f"1e-9:1e-5; got {text!r}"
        )
    exps = []
    for end in (lo, hi):
        exp = round(math.log10(end))
        if not math.isclose(end, 10.0**exp, rel_tol=1e-9):
            raise UserError(f"--{name}: {end:g} is not a power of ten (use e.g. 1e-6)")
        exps.append(exp)
    if exps[0] > exps[1]:
        raise UserError(f"--{name}: the range {text} runs backwards; write LOW:HIGH")
    return [float(f"1e{e}") for e in range(exps[0], exps[1] + 1)]


def pow10_study(
    name: str, base: TrialConfig, ranges: dict[str, str], seeds: int = 1, description: str = ""
) -> StudySpec:
    """Every combination of powers of ten in the ranges (the paper's §5.1.1 search)."""
    if not ranges:
        raise UserError("a pow10 study needs at least one range, e.g. --gamma 1e-9:1e-5")
    axes = {k: parse_pow10_range(k, v) for k, v in ranges.items()}
    return StudySpec(
        name,
        Pow10Design(swept=tuple(axes), ranges=dict(ranges)),
        base,
        grid=axes,
        seeds=seeds,
        description=description,
    )
