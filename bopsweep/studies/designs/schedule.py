"""The schedule design (the paper's Fig. 4): one hyperparameter scheduled up (×factor) and
down (÷factor) against the constant baseline, per Bop2ndOrder variant; in a study file,
``[schedule]`` with ``param``, ``kind``, ``every``, ``factor`` and ``variants``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

from bopsweep.defaults import PAPER_BASE, SCHEDULE_FACTOR, Optimizer
from bopsweep.errors import UserError
from bopsweep.studies.builders import changed, with_lr_decay
from bopsweep.studies.designs.base import (
    NUMBER,
    Design,
    FigureName,
    FileStudy,
    read_meta,
    stored_swept,
)
from bopsweep.studies.spec import StudySpec
from bopsweep.studies.tables import only, typed
from bopsweep.trial.config import HYPERPARAMETERS, TrialConfig
from bopsweep.trial.schedules import Schedule


@dataclass(frozen=True)
class ScheduleDesign(Design):
    """``schedule_param`` scheduled ``schedule_kind``-ly by ``factor`` (exponential: every
    ``every`` epochs); named as stored."""

    kind: ClassVar[str] = "schedule"
    sections: ClassVar[tuple[str, ...]] = ("schedule",)
    figures: ClassVar[tuple[FigureName, ...]] = (
        FigureName.SCHEDULE,
        FigureName.COMPARISON,
        FigureName.PI,
        FigureName.WEIGHTS,
    )

    schedule_param: str
    schedule_kind: str
    every: float
    factor: float

    def to_meta(self) -> dict[str, Any]:
        return {
            **self.swept_meta(),
            "schedule_param": self.schedule_param,
            "schedule_kind": self.schedule_kind,
            "every": self.every,
            "factor": self.factor,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ScheduleDesign:
        needed = {"schedule_param": str, "schedule_kind": str, "every": NUMBER, "factor": NUMBER}
        meta = read_meta(meta, cls.kind, needed, {"swept": list})
        return cls(
            stored_swept(meta),
            meta["schedule_param"],
            meta["schedule_kind"],
            meta["every"],
            meta["factor"],
        )

    @classmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        sched, where = file.table("schedule"), f"[schedule] of {file.where}"
        only(sched, {"param", "kind", "every", "factor", "variants"}, where)
        if "param" not in sched or "kind" not in sched:
            raise UserError(f"[schedule] in {file.where} needs param and kind")
        typed(sched, where, param=str, kind=str, every=float, factor=float)
        variants = sched.get("variants")
        if variants is not None and not (
            isinstance(variants, list) and all(isinstance(v, str) for v in variants)
        ):
            raise UserError(
                f"variants in {where} must be a list of strings, e.g. "
                f'["biased", "unbiased"]; got {variants!r}'
            )
        return schedule_study(
            file.name,
            file.base,
            sched["param"],
            sched["kind"],
            sched.get("every"),
            sched.get("factor", SCHEDULE_FACTOR),
            variants,
            file.seeds,
            file.description,
        )


def schedule_study(
    name: str,
    base: TrialConfig,
    param: str,
    kind: str,
    every: float | None = None,
    factor: float = SCHEDULE_FACTOR,
    variants: list[str] | None = None,
    seeds: int = 1,
    description: str = "",
    lr_every: float | None = None,
) -> StudySpec:
    """Fig. 4: ``param`` scheduled up (×factor) and down (÷factor) against the constant baseline.

    ``exponential``: ×factor or ÷factor every ``every`` epochs (default: 100 of 350, the
    paper's proportion, scaled to the run). ``polynomial``: linearly from the base value to
    base×factor or base÷factor over the whole run. Every arm keeps the base's own schedules
    (e.g. an ``lr`` schedule). ``lr_every``: add one, Adam's learning rate ×0.1
    (:data:`~bopsweep.defaults.LR_DECAY`) every ``lr_every`` epochs, as the reference code's
    Fig. 4 runs do (every 100 epochs; the paper does not say).
    """
    if param not in HYPERPARAMETERS:
        raise UserError(f"cannot schedule {param!r} in a schedule study; use gamma, sigma or tau")
    if kind not in ("exponential", "polynomial"):
        raise UserError(f"schedule kind must be exponential or polynomial, got {kind!r}")
    if not factor > 1:
        raise UserError(f"--factor must be > 1 (the arms go ×factor and ÷factor), got {factor}")
    variants = variants or ["biased", "unbiased"]
    for v in variants:
        if v not in ("biased", "unbiased"):
            raise UserError(f"unknown variant {v!r}; use biased and/or unbiased")
    if lr_every is not None:
        base = with_lr_decay(base, lr_every)
    if every is None:
        every = max(1.0, round(base.epochs * 100 / 350))
    up, down = _up_and_down(base, param, kind, every, factor)
    arms = []
    for variant in variants:
        for direction, schedule in (("constant", None), ("increasing", up), ("decreasing", down)):
            arm: dict[str, Any] = {
                "label": f"{variant} {direction}",
                "unbiased": variant == "unbiased",
            }
            if schedule is not None:
                arm["schedules"] = {**base.schedules, param: schedule}
            arms.append(arm)
    return StudySpec(
        name,
        ScheduleDesign((param,), param, kind, every, factor),
        changed(base, optimizer=Optimizer.BOP2.value),
        arms=arms,
        seeds=seeds,
        description=description,
    )


def _up_and_down(
    base: TrialConfig, param: str, kind: str, every: float, factor: float
) -> tuple[Schedule, Schedule]:
    """The increasing and decreasing arms' schedules of ``param``: ×factor and ÷factor every
    ``every`` epochs (``exponential``), or to base×factor and base÷factor (``polynomial``)."""
    if kind == "exponential":
        up = Schedule(kind="exponential", rate=factor, every=every)
        down = Schedule(kind="exponential", rate=1 / factor, every=every)
        return up, down
    value = (
        base.initial(param)
        if getattr(base, param) is not None
        else cast(float, PAPER_BASE[param])  # a float for each of HYPERPARAMETERS
    )
    up = Schedule(kind="polynomial", end=value * factor)
    down = Schedule(kind="polynomial", end=value / factor)
    return up, down
