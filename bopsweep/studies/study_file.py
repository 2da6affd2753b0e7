"""Study files: a study written down in TOML, the form ``bopsweep run FILE`` reads::

[study]
name = "fig3-gamma"
kind = "grid"            # grid | pow10 | schedule | arms | optuna
description = "..."
seeds = 1

[base]                   # any `bopsweep train` setting
optimizer = "bop2"
unbiased = true

[grid]                   # kind = "grid": cartesian product over any settings
gamma = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]

[pow10]                  # kind = "pow10": every power of ten in each range
gamma = "1e-9:1e-5"

[schedule]               # kind = "schedule": Fig. 4's up / down / constant arms
param = "tau"
kind = "exponential"     # or "polynomial"
every = 100              # epochs between ×factor steps (exponential)
factor = 10
variants = ["biased", "unbiased"]

[[arms]]                 # kind = "arms" (or with a grid: arms × grid)
label = "Bop"
optimizer = "bop"
[arms.schedules.gamma]
kind = "exponential"
rate = 0.1
every = 100

[optuna]                 # kind = "optuna": trials, sampler, sampler_seed, pruner
trials = 50
[space]                  # its search space (see bopsweep.studies.search)

Each kind's sections are read by its design (:mod:`bopsweep.studies.designs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bopsweep.errors import UserError
from bopsweep.studies.designs import DESIGNS, FileStudy, design_named
from bopsweep.studies.spec import StudySpec
from bopsweep.studies.tables import only, read_toml, table
from bopsweep.trial.config import TrialConfig

# every table a study file may hold: its own, and those its designs read
SECTIONS = {"study", "base", *(s for design in DESIGNS.values() for s in design.sections)}


def load_study_file(path: Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a TOML study file; ``overrides`` (command line) win over [base]."""
    path = Path(path)
    data = read_toml(path, "study file")
    where = str(path)
    only(data, SECTIONS, where)
    study = table(data, "study", where)
    only(study, {"name", "kind", "description", "seeds"}, f"[study] of {where}")
    kind = study.get("kind", "grid")
    name = study.get("name", path.stem)
    description = study.get("description", "")
    for key, value in (("name", name), ("kind", kind), ("description", description)):
        if not isinstance(value, str):
            raise UserError(f"[study] {key} in {where} must be a string, got {value!r}")
    base_values = {**table(data, "base", where), **(overrides or {})}
    base = TrialConfig.from_dict(base_values, f"[base] of {where}")
    arms = data.get("arms", [])
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        raise UserError(f"arms in {where} must be an array of tables ([[arms]])")
    seeds = study.get("seeds", 1)
    head = FileStudy(name, base, seeds, description, arms, data, where)
    return design_named(kind, f" in {where}").from_file(head)
