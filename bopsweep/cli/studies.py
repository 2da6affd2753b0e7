"""The study commands: ``grid``, ``pow10``, ``schedule``, ``run`` (a study file) and ``optuna``.

Each builds a :class:`~bopsweep.studies.StudySpec` with :mod:`bopsweep.studies` and hands it to
:func:`bopsweep.driver.run_study`, which creates (or tops up) the study and runs its trials.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bopsweep import defaults as d
from bopsweep.cli.app import command
from bopsweep.cli.options import PANEL_STUDY, F, Placement, StudyOptions, TrialOptions, with_groups
from bopsweep.defaults import Pruner, Sampler, ScheduleKind

if TYPE_CHECKING:  # in hints only: bopsweep.studies costs every start-up (--help) ~25 ms
    from bopsweep.cli.display import StudyDisplay
    from bopsweep.driver import DispatchOptions
    from bopsweep.studies.spec import StudySpec
    from bopsweep.trial.config import TrialConfig


def dispatch(spec: StudySpec, where: Placement, study: StudyOptions, trial: TrialOptions) -> None:
    """Run ``spec`` with the command line's options; exits with the driver's exit code."""
    from bopsweep.driver import run_study
    from bopsweep.store import storage_url

    options = where.dispatch_options(
        storage_url(study.storage),
        trial.device or spec.base.device,
        trial.data_dir,
        download=bool(trial.download),
        queue_only=study.queue_only,
    )
    if study.dry_run:
        preview(spec, options)
    raise typer.Exit(run_study(spec, options, typer.echo, study_display(spec.name, where.quiet)))


def study_display(name: str, quiet: bool) -> StudyDisplay:
    """The live table of a study's trials, or plain lines when asked or not on a terminal."""
    from bopsweep.cli.display import StudyDisplay

    return StudyDisplay(name, quiet=quiet or not sys.stderr.isatty())


def preview(spec: StudySpec, options: DispatchOptions) -> None:
    """``--dry-run``: print what a run would do; exit 0 having created nothing."""
    from bopsweep.driver.plan_preview import preview_study, render_preview

    for line in render_preview(preview_study(spec, options)):
        typer.echo(line)
    raise typer.Exit(0)


def _base(given: dict[str, Any], study: StudyOptions) -> TrialConfig:
    """The study's base point from the trial options and ``--set`` values."""
    from bopsweep.studies.builders import base_point
    from bopsweep.trial.config import parse_assignments

    return base_point(given, parse_assignments(study.set_ or []))


def study_command(function: F) -> F:
    """A study command: its own options (in the Study panel), then the trial, study and
    placement options."""
    return command(panel=PANEL_STUDY)(
        with_groups(trial=TrialOptions, study=StudyOptions, where=Placement)(function)
    )


@study_command
def grid(
    param: Annotated[
        list[str],
        typer.Option(
            help="Hyperparameter to sweep (gamma, sigma, tau, or any trial setting); "
            "repeat for the cartesian product."
        ),
    ],
    values: Annotated[
        list[str] | None,
        typer.Option(
            help="Comma-separated values, one --values per --param, in order. "
            "(default: the base value ×10⁻², ×10⁻¹, ×1, ×10, ×10²)"
        ),
    ] = None,
    *,
    trial: TrialOptions,
    study: StudyOptions,
    where: Placement,
) -> None:
    """Ablation: sweep one hyperparameter around the base point (the paper's Fig. 3), or several
    as a cartesian product. Base: Bop2ndOrder unbiased, γ=1e-7, σ=1e-3, τ=1e-6, batch norm.

    Each trial's value is its final validation accuracy; the best epoch is recorded too.
    """
    from bopsweep.studies import grid_study
    from bopsweep.studies.builders import grid_axes

    base = _base(trial.given(), study)
    axes = grid_axes(base, param, values)
    name = study.study or "grid-" + "-".join(param)
    dispatch(grid_study(name, base, axes, seeds=study.seed_count()), where, study, trial)


@study_command
def pow10(
    gamma: Annotated[str | None, typer.Option(help="Range of γ, e.g. 1e-9:1e-5.")] = None,
    sigma: Annotated[str | None, typer.Option(help="Range of σ, e.g. 1e-5:1e-1.")] = None,
    tau: Annotated[str | None, typer.Option(help="Range of τ, e.g. 1e-8:1e-4.")] = None,
    *,
    trial: TrialOptions,
    study: StudyOptions,
    where: Placement,
) -> None:
    """Every combination of powers of ten in the given ranges (the paper's §5.1.1 search)."""
    from bopsweep.studies import pow10_study

    ranges = {k: v for k, v in {"gamma": gamma, "sigma": sigma, "tau": tau}.items() if v}
    base = _base(trial.given(), study)
    name = study.study or "pow10-" + "-".join(ranges)
    dispatch(pow10_study(name, base, ranges, seeds=study.seed_count()), where, study, trial)


@study_command
def schedule(
    param: Annotated[
        str, typer.Option(help="The hyperparameter to schedule: gamma, sigma or tau.")
    ],
    kind: Annotated[
        ScheduleKind, typer.Option(help="How it changes: exponential or polynomial.")
    ] = ScheduleKind.EXPONENTIAL,
    every: Annotated[
        float | None,
        typer.Option(
            help="Epochs between ×factor steps (exponential). (default: 100 of every "
            "350 epochs, the paper's proportion)"
        ),
    ] = None,
    factor: Annotated[
        float, typer.Option(help="Exponential: ×factor per step; polynomial: to ×factor.")
    ] = d.SCHEDULE_FACTOR,
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Bop2ndOrder variants to run: biased, unbiased. (default: both)"),
    ] = None,
    lr_every: Annotated[
        float | None,
        typer.Option(
            help=f"Also multiply Adam's learning rate by {d.LR_DECAY:g} every this many epochs, "
            "in every arm, as the reference code's Fig. 4 runs do (every 100; the paper does "
            "not say). (default: off: lr constant)",
        ),
    ] = None,
    *,
    trial: TrialOptions,
    study: StudyOptions,
    where: Placement,
) -> None:
    """Schedule one hyperparameter up (×factor) and down (÷factor) against the constant
    baseline, for the biased and unbiased variants: the paper's Fig. 4."""
    from bopsweep.studies import schedule_study

    base = _base(trial.given(), study)
    name = study.study or f"schedule-{param}-{kind.value}"
    spec = schedule_study(
        name,
        base,
        param,
        kind.value,
        every,
        factor,
        variant,
        seeds=study.seed_count(),
        lr_every=lr_every,
    )
    dispatch(spec, where, study, trial)


@study_command
def run(
    file: Annotated[
        Path, typer.Argument(help="A study file (TOML), e.g. studies/fig3_gamma.toml.")
    ],
    *,
    trial: TrialOptions,
    study: StudyOptions,
    where: Placement,
) -> None:
    """Run a study file: the settings of its base table, changed by any trial option or --set
    given here."""
    from dataclasses import replace

    from bopsweep.studies import load_study_file
    from bopsweep.trial import settings
    from bopsweep.trial.config import parse_assignments

    overrides = {k: v for k, v in trial.given().items() if k not in settings.LOCAL}
    overrides.update(parse_assignments(study.set_ or []))
    spec = load_study_file(file, overrides)
    if study.study:
        spec = replace(spec, name=study.study)
    if study.seeds is not None:
        spec = replace(spec, seeds=study.seed_count())
    dispatch(spec, where, study, trial)


@study_command
def optuna(
    trials: Annotated[
        int, typer.Option(help="Trials in the study in total; running it again tops it up.")
    ] = d.SEARCH_TRIALS,
    sampler: Annotated[Sampler, typer.Option(help="Optuna sampler.")] = Sampler.TPE,
    sampler_seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler (several workers: seed + index).")
    ] = None,
    pruner: Annotated[
        Pruner, typer.Option(help="Pruner, on per-epoch validation accuracy.")
    ] = Pruner.NONE,
    gamma: Annotated[str | None, typer.Option(help="Range of γ. (default: 1e-10:1e-4)")] = None,
    sigma: Annotated[str | None, typer.Option(help="Range of σ. (default: 1e-6:1)")] = None,
    tau: Annotated[str | None, typer.Option(help="Range of τ. (default: 1e-9:1e-3)")] = None,
    fix: Annotated[
        list[str] | None,
        typer.Option(
            help="Remove a dimension, NAME=VALUE: gamma, sigma, tau, variant, norm, "
            "NAME_schedule (e.g. --fix sigma=1e-3 --fix tau_schedule=constant)."
        ),
    ] = None,
    space: Annotated[
        Path | None, typer.Option(help="A TOML file giving the whole search space.")
    ] = None,
    *,
    trial: TrialOptions,
    study: StudyOptions,
    where: Placement,
) -> None:
    """Search γ, σ, τ, the variant (bop, bop2 biased/unbiased), the norm and per-hyperparameter
    schedules with an Optuna sampler, optionally pruning weak trials. Each trial's value is its
    final validation accuracy; with --seeds K each configuration trains on K seeds and its
    value (and pruning) is their mean, kept in the companion study NAME:seed-means."""
    from bopsweep.studies import optuna_study
    from bopsweep.studies.search import space_for

    given = trial.given()
    ranges = {"gamma": gamma, "sigma": sigma, "tau": tau}
    search_space = space_for(space, ranges, fix or [], given)
    variant_free = {k: v for k, v in given.items() if k not in ("optimizer", "unbiased")}
    base = _base(variant_free, study)
    spec = optuna_study(
        study.study or "optuna-search",
        base,
        search_space,
        trials,
        sampler.value,
        sampler_seed,
        pruner.value,
        seeds=study.seed_count(),
    )
    dispatch(spec, where, study, trial)
