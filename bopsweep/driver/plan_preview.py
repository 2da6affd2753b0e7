"""``--dry-run``: what a study command would do, checked as a run checks it, creating nothing.

:func:`preview_study` validates the study and its options exactly as
:func:`~bopsweep.driver.study.run_study` does (bad input raises the same
:class:`~bopsweep.errors.UserError`), reads an existing database read-only, and returns a
:class:`Preview`; :func:`render_preview` turns it into lines of text. No database file, lock
file, checkpoint folder or download is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bopsweep.driver.queue import TrialQueue
from bopsweep.driver.study import check_run
from bopsweep.store import Store, redact
from bopsweep.studies import count_trials
from bopsweep.studies.designs import SearchDesign

if TYPE_CHECKING:
    from bopsweep.driver.study import DispatchOptions
    from bopsweep.studies import PlannedTrial, StudySpec, TrialConfig

SHOWN = 20  # trials listed; the rest are counted

# Seconds of one CPU training epoch per (training image + a third of a validation image, the
# cost of a forward pass alone) at width 1, scaled by width² (every layer's channels scale with
# the width, so its multiply-adds with the square). Measured once: `bopsweep train --device cpu
# --width 0.25 --subset 2000 --val-subset 500 --epochs 2 --batch-size 100` on synthetic
# CIFAR-format data took 41.6 s (20.8 s an epoch) on 2 shared x86 cores, torch 2.x, no
# --compile; 20.8 / (0.25² × (2000 + 500 / 3)) ≈ 0.15. Small widths carry overheads that width²
# misses, and other CPUs differ several-fold: a rough constant, labelled so wherever shown.
CPU_SECONDS_PER_IMAGE_AT_WIDTH_1 = 0.15


@dataclass
class Preview:
    """What a study command would do: the plan, what the database holds of it, a guess of time."""

    name: str
    kind: str  # the study's design, as stored and shown
    storage: str  # passwords masked
    database_exists: bool  # a study database with Optuna's tables
    study_exists: bool
    total: int  # trials of the study (a search: its configurations × seeds)
    planned: list[PlannedTrial]  # none for an Optuna study (sampled as it runs)
    held: set[str]  # planned configuration ids the study already holds (queued, running, done)
    existing: int  # trials of the study that count towards its plan
    to_run: int  # trials still to train (not complete, pruned or diverged)
    epochs: int  # per trial, of the base point
    device: str  # "cpu" or "cuda"
    slots: list[str]  # the first SHOWN slots' names
    root: str  # trial folders
    data_dir: str
    download: bool  # would download CIFAR-10 first
    queue_only: bool
    seconds: float | None  # rough estimate of the training time; None where unknown
    varying: list[str] = field(default_factory=list)  # params that differ between trials
    n_slots: int = 0  # all of them (more than ``slots`` names)
    sampled: bool = False  # an Optuna search: its trials are sampled as it runs
    seeds: int = 1  # runs per configuration (a search's total is configurations × seeds)


def epoch_seconds(config: TrialConfig, device: str) -> float | None:
    """A rough estimate of one training epoch (with its validation), or None where there is
    no measured constant (a GPU)."""
    if device != "cpu":
        return None
    train = config.subset or 50_000
    val = config.val_subset or 10_000
    return CPU_SECONDS_PER_IMAGE_AT_WIDTH_1 * config.width**2 * (train + val / 3)


def preview_study(spec: StudySpec, options: DispatchOptions) -> Preview:
    """Check ``spec`` and ``options`` as a run would and say what it would do; writes nothing."""
    checked = check_run(spec, options, dry_run=True)
    store = Store.open_if_made(options.storage)
    study = store.existing(spec) if store is not None else None
    queue = TrialQueue(study) if study is not None else None
    device = checked.slots[0].device
    planned = checked.planned
    sampled = isinstance(spec.design, SearchDesign)
    # a search's trials are its seed runs: K per sampled configuration (--seeds K)
    total = count_trials(spec) * (spec.seeds if sampled else 1)
    if sampled:
        existing = queue.counted() if queue is not None else 0
        finished = len(queue.finished_configs()) if queue is not None else 0
        per_trial = _trial_seconds(spec.base, device)
        to_run = max(0, total - finished)
        seconds = None if per_trial is None else to_run * per_trial
        held: set[str] = set()
    else:
        held = queue.held_configs() & {p.config_id for p in planned} if queue else set()
        done = queue.finished_configs() if queue is not None else set()
        remaining = [p for p in planned if p.config_id not in done]
        existing, to_run = len(held), len(remaining)
        costs = [_trial_seconds(p.config, device) for p in remaining]
        seconds = None if None in costs else sum(c for c in costs if c is not None)
    download = bool(options.download) and not checked.data_dir.exists()
    return Preview(
        name=spec.name,
        kind=spec.kind,
        storage=redact(options.storage),
        database_exists=store is not None,
        study_exists=study is not None,
        total=total,
        planned=planned,
        held=held,
        existing=existing,
        to_run=to_run,
        epochs=spec.base.epochs,
        device=device,
        slots=[s.name for s in checked.slots[:SHOWN]],
        n_slots=len(checked.slots),
        root=str(checked.root),
        data_dir=str(checked.data_dir),
        download=download,
        queue_only=options.queue_only,
        seconds=seconds,
        varying=varying_params(planned),
        sampled=sampled,
        seeds=spec.seeds,
    )


def varying_params(planned: list[PlannedTrial]) -> list[str]:
    """The params whose value differs between the planned trials, in their order."""
    names: dict[str, None] = {}
    for p in planned:
        names.update(dict.fromkeys(p.params))
    return [
        n for n in names if len({json.dumps(p.params.get(n), sort_keys=True) for p in planned}) > 1
    ]


def render_preview(preview: Preview, shown: int = SHOWN) -> list[str]:
    """The lines ``--dry-run`` prints."""
    p = preview
    lines = ["dry run: nothing is created or changed (no database, lock or trial folder)"]
    lines.append(f"study {p.name} ({p.kind}) in {p.storage}")
    if not p.database_exists:
        where = "the database does not exist yet; a run would create it"
    elif not p.study_exists:
        where = "the database exists; the study is new"
    else:
        where = "the study exists"
    if p.sampled:
        configurations = f"{p.total // p.seeds} configurations × {p.seeds} seeds = "
        per_seed = configurations if p.seeds > 1 else ""
        lines.append(
            f"{per_seed}{p.total} trials in total, {p.existing} exist ({where}); the others are "
            "sampled by the study's sampler as it runs, so none can be listed"
        )
    else:
        new = p.total - p.existing
        lines.append(
            f"{p.total} trials planned, {p.existing} already in the study, {new} would be "
            f"queued ({where})"
        )
        lines.append("trials (label  [the params that vary]):")
        for t in p.planned[:shown]:
            values = " ".join(f"{k}={_value(t.params.get(k))}" for k in p.varying)
            label = t.label or t.config_id
            shown_values = f"  [{values}]" if values and values != label else ""
            mark = "  (in the study)" if t.config_id in p.held else ""
            lines.append(f"  {label}{shown_values}{mark}")
        if len(p.planned) > shown:
            lines.append(f"  … {len(p.planned) - shown} more")
    data = f"would download CIFAR-10 to {p.data_dir}" if p.download else f"data {p.data_dir}"
    action = "would queue only" if p.queue_only else f"would run on {_slots(p)}"
    lines.append(f"{action}; {data}; trial folders in {p.root}")
    lines.append(_estimate(p))
    return lines


def _slots(p: Preview) -> str:
    """The slots by name, the first few of many (``--workers`` may be large)."""
    more = p.n_slots - len(p.slots)
    return ", ".join(p.slots) + (f" and {more} more ({p.n_slots} slots)" if more > 0 else "")


def _estimate(p: Preview) -> str:
    what = f"{p.to_run} trials to train × {p.epochs} epochs"
    if p.seconds is None:
        return f"time: unknown on {p.device.upper()} (no measured per-epoch cost); {what}"
    return (
        f"time: rough estimate {_duration(p.seconds)} for {what} (a CPU constant measured on "
        "one machine, scaled by width² and images per epoch; yours may differ several-fold)"
    )


def _trial_seconds(config: TrialConfig, device: str) -> float | None:
    per_epoch = epoch_seconds(config, device)
    return None if per_epoch is None else per_epoch * config.epochs


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"
