"""What every study design is: its stored kind, its figures, how it reads its part of a
stored definition (``meta``) and of a study file, and how it writes the former back.

A design is a frozen dataclass of what its kind adds to a
:class:`~bopsweep.studies.spec.StudySpec` (base × arms × grid × seeds). Its stored form is the
definition's ``meta``, written exactly as bopsweep has always written it, so a database made by
an earlier bopsweep loads and resumes, and one made now reads back in an earlier one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from bopsweep.defaults import Choice
from bopsweep.errors import UserError
from bopsweep.studies.tables import table

if TYPE_CHECKING:
    from bopsweep.studies.spec import StudySpec
    from bopsweep.trial.config import TrialConfig

STORED = "the study's definition (bopsweep_spec)"
D = TypeVar("D", bound="Design")


class FigureName(Choice):
    """The figures a design names (:attr:`Design.figures`); :mod:`bopsweep.readers.plots` draws
    each."""

    OPTUNA = "optuna"  # the search's history, parallel coordinates, importances
    SWEEP = "sweep"  # ablation and summary per swept numeric setting (Fig. 3)
    SCHEDULE = "schedule"  # the scheduled hyperparameter up, down and constant (Fig. 4)
    COMPARISON = "comparison"  # accuracy per configuration (Fig. 5/6), where nothing is swept
    PI = "pi"  # the flip metric π_t per step
    WEIGHTS = "weights"  # FF and C2I ratios, where the runs recorded them


@dataclass(frozen=True)
class FileStudy:
    """A study file's common part, read before its design reads its own sections."""

    name: str
    base: TrialConfig
    seeds: Any  # checked by StudySpec
    description: str
    arms: list[dict[str, Any]]
    data: dict[str, Any]  # the whole file
    where: str  # the file, for messages

    def table(self, key: str) -> dict[str, Any]:
        return table(self.data, key, self.where)


@dataclass(frozen=True)
class Design(ABC):
    """A study design. ``swept``: what its studies vary, as stored (None: the definition, written
    by another tool, has none; nothing reads it, so it is kept as it came)."""

    kind: ClassVar[str]  # the name stored in the definition and written in study files
    sections: ClassVar[tuple[str, ...]]  # the study-file tables it reads
    figures: ClassVar[tuple[FigureName, ...]]  # what plots draw of its studies, in no order

    swept: tuple[Any, ...] | None

    def to_meta(self) -> dict[str, Any]:
        """The stored ``meta`` of a definition of this design (here: ``swept`` alone)."""
        return self.swept_meta()

    @classmethod
    def from_meta(cls: type[D], meta: dict[str, Any]) -> D:
        """The design of a stored definition's ``meta`` (another tool may have written it):
        one that is not of its shape is one line. Here: a design of ``swept`` alone."""
        return cls(stored_swept(read_meta(meta, cls.kind, {}, {"swept": list})))

    @classmethod
    @abstractmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        """The study of a study file of this kind (its sections read and checked)."""

    def swept_meta(self) -> dict[str, Any]:
        return {} if self.swept is None else {"swept": list(self.swept)}


def read_meta(
    meta: dict[str, Any], kind: str, needed: dict[str, Any], optional: dict[str, Any]
) -> dict[str, Any]:
    """``meta`` checked: every ``needed`` key present, no key beyond ``needed`` and
    ``optional``, each of its type (a type or a tuple of types; numbers never booleans)."""
    types = {**needed, **optional}
    if unknown := set(meta) - set(types):
        raise UserError(f"{STORED} of kind {kind!r} has unknown meta {sorted(unknown)}")
    if missing := set(needed) - set(meta):
        raise UserError(f"{STORED} of kind {kind!r} lacks meta {sorted(missing)}")
    for key, value in meta.items():
        if not isinstance(value, types[key]) or (
            isinstance(value, bool) and bool not in _flat(types[key])
        ):
            raise UserError(f"{STORED} of kind {kind!r} holds meta {key} of {type(value).__name__}")
    return meta


def stored_swept(meta: dict[str, Any]) -> tuple[Any, ...] | None:
    """The ``swept`` of a checked ``meta``, None where it has none."""
    return tuple(meta["swept"]) if "swept" in meta else None


def _flat(types: Any) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


NUMBER = (int, float)
