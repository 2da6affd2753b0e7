"""The search design: an Optuna search over a space of γ, σ, τ, the variant, the norm and
per-hyperparameter schedules (:mod:`bopsweep.studies.search`); its trials are sampled as it
runs, none planned. In a study file, ``[optuna]`` (trials, sampler, sampler_seed, pruner) and
``[space]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bopsweep.defaults import SEARCH_TRIALS, SEED_LIMIT, Pruner, Sampler
from bopsweep.errors import UserError
from bopsweep.studies.designs.base import Design, FigureName, FileStudy, read_meta, stored_swept
from bopsweep.studies.search import SearchSettings, SearchSpace, space_from_table
from bopsweep.studies.spec import StudySpec
from bopsweep.studies.tables import only
from bopsweep.trial.config import TrialConfig


@dataclass(frozen=True)
class SearchDesign(Design):
    """``settings``: what the search samples and how (stored as the definition's meta)."""

    kind: ClassVar[str] = "optuna"
    sections: ClassVar[tuple[str, ...]] = ("optuna", "space")
    figures: ClassVar[tuple[FigureName, ...]] = (
        FigureName.OPTUNA,
        FigureName.PI,
        FigureName.WEIGHTS,
    )

    settings: SearchSettings

    def to_meta(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), **self.swept_meta()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SearchDesign:
        needed = {
            "space": dict,
            "trials": int,
            "sampler": str,
            "sampler_seed": (int, type(None)),
            "pruner": str,
        }
        meta = read_meta(meta, cls.kind, needed, {"swept": list})
        return cls(stored_swept(meta), SearchSettings.from_dict(meta))

    @classmethod
    def from_file(cls, file: FileStudy) -> StudySpec:
        opts = file.table("optuna")
        only(opts, {"trials", "sampler", "sampler_seed", "pruner"}, f"[optuna] of {file.where}")
        space = space_from_table(file.table("space"), file.where)
        return optuna_study(
            file.name,
            file.base,
            space,
            opts.get("trials", SEARCH_TRIALS),
            opts.get("sampler", Sampler.TPE.value),
            opts.get("sampler_seed"),
            opts.get("pruner", Pruner.NONE.value),
            file.description,
            file.seeds,
        )


def optuna_study(
    name: str,
    base: TrialConfig,
    space: SearchSpace,
    trials: int,
    sampler: str = Sampler.TPE.value,
    sampler_seed: int | None = None,
    pruner: str = Pruner.NONE.value,
    description: str = "",
    seeds: int = 1,
) -> StudySpec:
    """A search with Optuna over ``space``: ``trials`` trials in total, however often it is
    resumed; each configuration trained on ``seeds`` seeds and judged by their mean
    (:mod:`bopsweep.driver.seed_average`)."""
    settings = SearchSettings.checked(space, trials, sampler, sampler_seed, pruner)
    if isinstance(seeds, int) and base.seed + seeds > SEED_LIMIT:  # the last seed run's seed
        raise UserError(f"--seeds {seeds} from seed {base.seed} passes the largest seed 2^32-1")
    design = SearchDesign(swept=tuple(space.ranges), settings=settings)
    return StudySpec(name, design, base, seeds=seeds, description=description)
