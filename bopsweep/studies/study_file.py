"""Study files: a study written down in TOML, the form ``bopsweep run FILE`` reads::

[study]
name = "fig3-gamma"
kind = "grid"            # grid | pow10 | schedule | arms
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
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli, the backport tomllib came from (declared for Python 3.10)
    import tomli as tomllib  # type: ignore[import-not-found]

from bopsweep.defaults import SCHEDULE_FACTOR, SEARCH_TRIALS, Pruner, Sampler
from bopsweep.errors import UserError
from bopsweep.studies.builders import grid_study, optuna_study, pow10_study, schedule_study
from bopsweep.studies.spec import StudySpec
from bopsweep.trial.config import TrialConfig


def load_study_file(path: Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a TOML study file; ``overrides`` (command line) win over [base]."""
    path = Path(path)
    data = read_toml(path, "study file")
    where = str(path)
    _only(data, {"study", "base", "grid", "pow10", "schedule", "arms", "optuna", "space"}, where)
    study = _table(data, "study", where)
    _only(study, {"name", "kind", "description", "seeds"}, f"[study] of {where}")
    kind = study.get("kind", "grid")
    name = study.get("name", path.stem)
    seeds = study.get("seeds", 1)
    description = study.get("description", "")
    for key, value, typ in (
        ("name", name, str),
        ("kind", kind, str),
        ("description", description, str),
    ):
        if not isinstance(value, typ):
            raise UserError(f"[study] {key} in {where} must be a string, got {value!r}")
    base_values = {**_table(data, "base", where), **(overrides or {})}
    base = TrialConfig.from_dict(base_values, f"[base] of {where}")
    arms = data.get("arms", [])
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        raise UserError(f"arms in {where} must be an array of tables ([[arms]])")
    if kind == "grid":
        spec = grid_study(name, base, _table(data, "grid", where), seeds, description)
        return StudySpec(**{**spec.__dict__, "arms": arms}) if arms else spec
    if kind == "pow10":
        return pow10_study(name, base, _table(data, "pow10", where), seeds, description)
    if kind == "schedule":
        sched = _table(data, "schedule", where)
        _only(sched, {"param", "kind", "every", "factor", "variants"}, f"[schedule] of {where}")
        if "param" not in sched or "kind" not in sched:
            raise UserError(f"[schedule] in {where} needs param and kind")
        _typed(sched, f"[schedule] of {where}", param=str, kind=str, every=float, factor=float)
        variants = sched.get("variants")
        if variants is not None and not (
            isinstance(variants, list) and all(isinstance(v, str) for v in variants)
        ):
            raise UserError(
                f"variants in [schedule] of {where} must be a list of strings, e.g. "
                f'["biased", "unbiased"]; got {variants!r}'
            )
        return schedule_study(
            name,
            base,
            sched["param"],
            sched["kind"],
            sched.get("every"),
            sched.get("factor", SCHEDULE_FACTOR),
            sched.get("variants"),
            seeds,
            description,
        )
    if kind == "arms":
        if not arms:
            raise UserError(f"a study of kind 'arms' needs [[arms]] tables in {where}")
        return StudySpec(
            name,
            "arms",
            base,
            arms=arms,
            grid=_table(data, "grid", where),
            seeds=seeds,
            description=description,
            meta={"swept": [a.get("label", f"arm {i}") for i, a in enumerate(arms)]},
        )
    if kind == "optuna":
        from bopsweep.studies.search import space_from_table

        opts = _table(data, "optuna", where)
        _only(opts, {"trials", "sampler", "sampler_seed", "pruner"}, f"[optuna] of {where}")
        space = space_from_table(_table(data, "space", where), where)
        return optuna_study(
            name,
            base,
            space,
            opts.get("trials", SEARCH_TRIALS),
            opts.get("sampler", Sampler.TPE.value),
            opts.get("sampler_seed"),
            opts.get("pruner", Pruner.NONE.value),
            description,
        )
    raise UserError(
        f"unknown study kind {kind!r} in {where}; use grid, pow10, schedule, arms or optuna"
    )


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's contents; a missing or unreadable file is one clear line."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise UserError(
            f"cannot read {what} {path}: its arrays or inline tables are nested too deeply"
        ) from None


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"[{key}] in {where} must be a table")
    return value


def _typed(data: dict[str, Any], where: str, **types: type) -> None:
    """Each present key of ``data`` has its type (float accepts integers, never booleans)."""
    for key, typ in types.items():
        if key not in data:
            continue
        value = data[key]
        ok = isinstance(value, (int, float) if typ is float else typ) and not isinstance(
            value, bool
        )
        if not ok:
            kind = "a number" if typ is float else "a string" if typ is str else typ.__name__
            raise UserError(f"{key} in {where} must be {kind}, got {value!r}")


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(sorted(unknown))} in {where}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
