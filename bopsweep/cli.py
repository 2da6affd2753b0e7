"""The ``bopsweep`` command line. Thin: parse, build a config, call the modules that do the work.

Heavy packages (torch, optuna, matplotlib) are imported inside the commands, so ``--help``
stays instant. Exit codes: 0 done, 1 the run failed (e.g. diverged, failed trials), 2 bad
input, 130 Ctrl-C (resumable).

Options shared by several commands are declared once (:data:`TRIAL_OPTIONS`,
:data:`DISPATCH_OPTIONS`) and added to each command's signature by :func:`with_options`.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bopsweep.errors import UserError
from bopsweep.studies import MAX_TRIALS

app = typer.Typer(
    help="Hyperparameter ablation studies of Bop and Bop2ndOrder on BinaryNet / CIFAR-10.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        from bopsweep import __version__

        typer.echo(f"bopsweep {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """Hyperparameter ablation studies of Bop and Bop2ndOrder on BinaryNet / CIFAR-10."""


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"bopsweep: error: {message}", err=True)
    return typer.Exit(code)


def user_errors(command: F) -> F:
    """Bad input → one line on stderr and exit 2. Never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as e:
            raise fail(str(e)) from None

    return wrapper  # type: ignore[return-value]


# --- shared options ------------------------------------------------------------------------------
def _opt(help: str, *names: str, default: Any = None, annotation: Any = Any) -> tuple:
    return annotation, typer.Option(*names, help=help), default


# Settings of every trial. None means "not given": the command's default (or the study file's).
TRIAL_OPTIONS: dict[str, tuple] = {
    "optimizer": _opt(
        "Binary optimizer: bop, bop2 (Bop2ndOrder) or latent (Adam + STE). (default: bop2)",
        annotation=str | None,
    ),
    "unbiased": _opt(
        "Bop2ndOrder variant, paper Eq. 10. (default: train --biased; studies "
        "--unbiased, the paper's base)",
        "--unbiased/--biased",
        annotation=bool | None,
    ),
    "lr": _opt(
        "Adam learning rate of the real-valued parameters. (default: 0.01)", annotation=float | None
    ),
    "epochs": _opt("Epochs per trial. (default: 100)", annotation=int | None),
    "batch_size": _opt("Batch size. (default: 100)", annotation=int | None),
    "width": _opt(
        "Width multiplier of BinaryNet, 1 = the paper's. (default: 1)", annotation=float | None
    ),
    "norm": _opt("Normalisation: batch or layer. (default: batch)", annotation=str | None),
    "init": _opt(
        "Kernel start: glorot (reference code) or sign (±1, paper). (default: glorot)",
        annotation=str | None,
    ),
    "data_dir": _opt(
        "Folder holding cifar-10-batches-py (or that folder itself).", annotation=Path | None
    ),
    "download": _opt(
        "Download CIFAR-10 to $BOPSWEEP_DATA (~/.cache/bopsweep) if missing.",
        "--download",
        annotation=bool | None,
    ),
    "subset": _opt("Train on a stratified, seeded subset of N images.", annotation=int | None),
    "val_subset": _opt("Validate on a stratified subset of N test images.", annotation=int | None),
    "augment": _opt(
        "Pad-crop-flip augmentation of training batches. (default: on)",
        "--augment/--no-augment",
        annotation=bool | None,
    ),
    "compile": _opt(
        "Compile the model and fuse the optimizer step with torch.compile (the first batch "
        "pays the compile time; Inductor caches it across trials).",
        "--compile",
        annotation=bool | None,
    ),
    "device": _opt("auto, cpu, cuda or cuda:N. (default: auto)", annotation=str | None),
    "seed": _opt(
        "Seed of the weights, data order and augmentation. (default: 0)", annotation=int | None
    ),
    "log_every": _opt(
        "Steps per logged π_t row (averaged over the window). (default: 10)", annotation=int | None
    ),
}

DISPATCH_OPTIONS: dict[str, tuple] = {
    "storage": _opt(
        "Database URL: sqlite:///FILE.db or postgresql://… (default: "
        "$BOPSWEEP_STORAGE or sqlite:///study.db)",
        annotation=str | None,
    ),
    "study": _opt("Study name. (default: from the command or file)", annotation=str | None),
    "seeds": _opt(
        "Repeat every configuration with K seeds (seed, seed+1, …). (default: 1)",
        annotation=int | None,
    ),
    "gpus": _opt(
        "GPUs to use, e.g. 0,1,2,3. (default: all visible; none → CPU)", annotation=str | None
    ),
    "per_gpu": _opt("Trials per GPU at once.", default=1, annotation=int),
    "workers": _opt("Trial processes at once on the CPU. (default: 1)", annotation=int | None),
    "max_retries": _opt("Re-queue a crashed trial this many times.", default=2, annotation=int),
    "heartbeat_interval": _opt(
        "Seconds between heartbeats of running trials (shared databases).",
        default=60,
        annotation=int,
    ),
    "grace_period": _opt(
        "Seconds without a heartbeat before another worker fails and re-queues "
        "a trial (at least twice the interval).",
        default=600,
        annotation=int,
    ),
    "checkpoint_dir": _opt(
        "Trial folders and checkpoints. (default: next to the database, e.g. study.ckpt/)",
        annotation=Path | None,
    ),
    "max_trials": _opt(
        "Refuse a study of more trials than this (a guard against typos in huge grids).",
        default=MAX_TRIALS,
        annotation=int,
    ),
    "queue_only": _opt(
        "Create the study and queue its trials, run none (then start 'bopsweep worker' on each "
        "machine).",
        "--queue-only",
        default=False,
        annotation=bool,
    ),
    "quiet": _opt(
        "Plain log lines instead of the live table.",
        "--quiet",
        "-q",
        default=False,
        annotation=bool,
    ),
}


def with_options(group: dict[str, tuple], into: str) -> Callable[[F], F]:
    """Add ``group``'s options to a command; they arrive as one dict argument ``into``."""

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != into]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[annotation, info],
            )
            for name, (annotation, info, default) in group.items()
        ]

        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            picked = {name: kwargs.pop(name) for name in group if name in kwargs}
            return func(*args, **{into: picked}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _given(options: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in options.items() if v is not None}
    if "data_dir" in values:
        values["data_dir"] = str(values["data_dir"])
    return values


# --- bopsweep train ---------------------------------------------------------------------------
@app.command()
@user_errors
@with_options(TRIAL_OPTIONS, into="trial")
def train(
    gamma: Annotated[
        float | None, typer.Option(help="Adaptivity rate γ. (default: bop 1e-4, bop2 1e-7)")
    ] = None,
    sigma: Annotated[
        float | None, typer.Option(help="Second-moment rate σ (bop2). (default: 1e-3)")
    ] = None,
    tau: Annotated[
        float | None, typer.Option(help="Threshold τ. (default: bop 1e-8, bop2 1e-6)")
    ] = None,
    eps: Annotated[float, typer.Option(help="ε of Bop2ndOrder's denominator.")] = 1e-10,
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            help="Schedule a hyperparameter, NAME=KIND(key=value,...); repeatable. "
            "E.g. 'gamma=exponential(rate=0.1, every=100)', "
            "'tau=polynomial(end=1e-2, epochs=500, power=1)'. NAME: gamma, sigma, tau, lr.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder. (default: runs/train-TIMESTAMP)")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder from its last checkpoint "
            "(its saved settings are used; --epochs may extend it)."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Plain lines, one per epoch.")
    ] = False,
    trial: dict[str, Any] | None = None,
) -> None:
    """Train one configuration and write metrics.csv, steps.csv and a checkpoint per epoch.

    The trial's result is the final validation accuracy (on CIFAR-10's test split); the best
    epoch is recorded too (summary.json).
    """
    from bopsweep.config import TrialConfig
    from bopsweep.schedules import parse_schedule

    given = _given(trial or {})
    if resume is not None:
        from bopsweep.run_dir import CONFIG

        if out is not None and out != resume:
            raise UserError("give either --out (a new run) or --resume (an existing one), not both")
        if set(given) - {"epochs"}:
            raise UserError(
                "--resume continues with the run's saved settings; only --epochs "
                f"may change (got --{', --'.join(sorted(set(given) - {'epochs'}))})"
            )
        if not (resume / CONFIG).is_file():
            raise UserError(f"{resume} holds no bopsweep run to resume (no {CONFIG})")
        config = TrialConfig.load(resume / CONFIG)
        if "epochs" in given:
            config = TrialConfig.from_dict({**config.to_dict(), "epochs": given["epochs"]})
        out_dir = resume
    else:
        hyper = {"gamma": gamma, "sigma": sigma, "tau": tau, "eps": eps}
        values = {**given, **{k: v for k, v in hyper.items() if v is not None}}
        values["schedules"] = dict(parse_schedule(s) for s in schedule or [])
        config = TrialConfig.from_dict(values, "the command line")
        out_dir = out or Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S")
    config = config.resolved()  # validate before importing torch

    from bopsweep.display import TrainDisplay
    from bopsweep.train import TrialDiverged, run_trial

    with TrainDisplay(quiet=quiet or not sys.stderr.isatty()) as display:
        try:
            summary = run_trial(
                config,
                out_dir,
                resume=resume is not None,
                on_progress=display.progress,
                on_epoch=display.epoch,
            )
        except TrialDiverged as e:
            raise fail(f"trial stopped: {e}", code=1) from None
        except OSError as e:  # a full disk, a folder gone: the epochs before it are saved
            display.close()
            raise fail(
                f"cannot write the run ({e.strerror or e}); the epochs up to its last "
                f"checkpoint are saved. Continue with: bopsweep train --resume {out_dir}",
                code=1,
            ) from None
        except KeyboardInterrupt:
            display.close()
            typer.echo(
                f"interrupted; finished epochs are saved. Continue with: "
                f"bopsweep train --resume {out_dir}",
                err=True,
            )
            raise typer.Exit(130) from None
    typer.echo(
        f"done: final val_acc {summary.get('final_val_acc', float('nan')):.4f}, "
        f"best {summary.get('best_val_acc', float('nan')):.4f} "
        f"(epoch {summary.get('best_epoch')}), {summary['seconds']:.1f} s; results in {out_dir}"
    )


# --- studies -------------------------------------------------------------------------------------
def _study_base(trial: dict[str, Any], sets: list[str] | None) -> Any:
    """The base point of a study: the paper's (§5.1.2) unless options or --set change it."""
    from bopsweep.config import TrialConfig
    from bopsweep.studies import PAPER_BASE

    values: dict[str, Any] = {"unbiased": True}
    values.update(_given(trial))
    if values.get("optimizer", "bop2") == "bop2":
        values = {**PAPER_BASE, **values}
    values.update(_parse_sets(sets))
    return TrialConfig.from_dict(values, "the base point")


def _parse_sets(sets: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as typed values."""
    from bopsweep.config import parse_field

    values = {}
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r} is not KEY=VALUE (e.g. --set sigma=1e-2)")
        values[key.strip()] = parse_field(key.strip(), text.strip())
    return values


def _dispatch(spec: Any, options: dict[str, Any], trial: dict[str, Any]) -> None:
    from bopsweep.config import check_device
    from bopsweep.dispatch import DispatchOptions, run_study
    from bopsweep.store import storage_url

    gpus = None
    if options.get("gpus") is not None:
        try:
            gpus = [int(g) for g in options["gpus"].split(",") if g.strip()]
        except ValueError:
            raise UserError(
                f"--gpus takes GPU indices like 0,1,2; got {options['gpus']!r}"
            ) from None
    if options["max_retries"] < 0:
        raise UserError(f"--max-retries must be >= 0, got {options['max_retries']}")
    check_device(trial.get("device") or spec.base.device)
    dispatch = DispatchOptions(
        storage=storage_url(options.get("storage")),
        checkpoint_dir=options.get("checkpoint_dir"),
        device=trial.get("device") or spec.base.device,
        gpus=gpus,
        per_gpu=options["per_gpu"],
        workers=options.get("workers"),
        max_retries=options["max_retries"],
        quiet=options["quiet"],
        data_dir=str(trial["data_dir"]) if trial.get("data_dir") else None,
        download=bool(trial.get("download")),
        worker_index=options.get("worker_index", 0),
        queue_only=options.get("queue_only", False),
        max_trials=options.get("max_trials", MAX_TRIALS),
        heartbeat_interval=options["heartbeat_interval"],
        grace_period=options["grace_period"],
    )
    raise typer.Exit(run_study(spec, dispatch, echo=typer.echo))


def _seeds(options: dict[str, Any]) -> int:
    seeds = options.get("seeds")
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    return seeds or 1


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Change the base point, KEY=VALUE (e.g. sigma=1e-2); repeatable."),
]


@app.command()
@user_errors
@with_options(DISPATCH_OPTIONS, into="options")
@with_options(TRIAL_OPTIONS, into="trial")
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
    set_: SetOption = None,
    options: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
) -> None:
    """Ablation: sweep one hyperparameter around the base point (the paper's Fig. 3), or several
    as a cartesian product. Base: Bop2ndOrder unbiased, γ=1e-7, σ=1e-3, τ=1e-6, batch norm.

    Each trial's value is its final validation accuracy; the best epoch is recorded too.
    """
    from bopsweep.config import FIELDS, HYPERPARAMETERS
    from bopsweep.studies import decades_around, grid_study, parse_axis

    options, trial = options or {}, trial or {}
    base = _study_base(trial, set_)
    if values is not None and len(values) != len(param):
        raise UserError(
            f"give one --values per --param ({len(param)} --param, {len(values)} --values)"
        )
    axes: dict[str, list[Any]] = {}
    for i, name in enumerate(param):
        if name in axes:
            raise UserError(f"--param {name} given twice")
        if name not in FIELDS or name == "schedules":
            raise UserError(
                f"unknown --param {name!r}; sweep gamma, sigma, tau or another "
                f"trial setting ({', '.join(f for f in FIELDS if f != 'schedules')})"
            )
        if values is None:
            centre = getattr(base.resolved(), name) if name in HYPERPARAMETERS else None
            if centre is None:
                raise UserError(f"give --values for {name} (defaults exist for gamma, sigma, tau)")
            axes[name] = decades_around(centre)
        else:
            axes[name] = parse_axis(name, values[i])
    name = options.get("study") or "grid-" + "-".join(param)
    spec = grid_study(name, base, axes, seeds=_seeds(options))
    _dispatch(spec, options, trial)


@app.command()
@user_errors
@with_options(DISPATCH_OPTIONS, into="options")
@with_options(TRIAL_OPTIONS, into="trial")
def pow10(
    gamma: Annotated[str | None, typer.Option(help="Range of γ, e.g. 1e-9:1e-5.")] = None,
    sigma: Annotated[str | None, typer.Option(help="Range of σ, e.g. 1e-5:1e-1.")] = None,
    tau: Annotated[str | None, typer.Option(help="Range of τ, e.g. 1e-8:1e-4.")] = None,
    set_: SetOption = None,
    options: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
) -> None:
    """Every combination of powers of ten in the given ranges (the paper's §5.1.1 search)."""
    from bopsweep.studies import pow10_study

    options, trial = options or {}, trial or {}
    ranges = {k: v for k, v in {"gamma": gamma, "sigma": sigma, "tau": tau}.items() if v}
    base = _study_base(trial, set_)
    spec = pow10_study(
        options.get("study") or "pow10-" + "-".join(ranges),
        base,
        ranges,
        seeds=_seeds(options),
    )
    _dispatch(spec, options, trial)


@app.command()
@user_errors
@with_options(DISPATCH_OPTIONS, into="options")
@with_options(TRIAL_OPTIONS, into="trial")
def schedule(
    param: Annotated[
        str, typer.Option(help="The hyperparameter to schedule: gamma, sigma or tau.")
    ],
    kind: Annotated[str, typer.Option(help="exponential or polynomial.")] = "exponential",
    every: Annotated[
        float | None,
        typer.Option(
            help="Epochs between ×factor steps (exponential). (default: 100 of every "
            "350 epochs, the paper's proportion)"
        ),
    ] = None,
    factor: Annotated[
        float, typer.Option(help="Exponential: ×factor per step; polynomial: to ×factor.")
    ] = 10.0,
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Bop2ndOrder variants to run: biased, unbiased. (default: both)"),
    ] = None,
    set_: SetOption = None,
    options: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
) -> None:
    """Schedule one hyperparameter up (×factor) and down (÷factor) against the constant
    baseline, for the biased and unbiased variants: the paper's Fig. 4."""
    from bopsweep.studies import schedule_study

    options, trial = options or {}, trial or {}
    base = _study_base(trial, set_)
    name = options.get("study") or f"schedule-{param}-{kind}"
    spec = schedule_study(name, base, param, kind, every, factor, variant, seeds=_seeds(options))
    _dispatch(spec, options, trial)


@app.command()
@user_errors
@with_options(DISPATCH_OPTIONS, into="options")
@with_options(TRIAL_OPTIONS, into="trial")
def run(
    file: Annotated[
        Path, typer.Argument(help="A study file (TOML), e.g. studies/fig3_gamma.toml.")
    ],
    set_: SetOption = None,
    options: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
) -> None:
    """Run a study file: its [base] settings, changed by any trial option or --set given here."""
    from dataclasses import replace

    from bopsweep.studies import load_study_file

    options, trial = options or {}, trial or {}
    overrides = {
        k: v for k, v in _given(trial).items() if k not in ("data_dir", "download", "device")
    }
    overrides.update(_parse_sets(set_))
    spec = load_study_file(file, overrides)
    if options.get("study"):
        spec = replace(spec, name=options["study"])
    if options.get("seeds") is not None:
        spec = replace(spec, seeds=_seeds(options))
    _dispatch(spec, options, trial)


@app.command()
@user_errors
@with_options(DISPATCH_OPTIONS, into="options")
@with_options(TRIAL_OPTIONS, into="trial")
def optuna(
    trials: Annotated[
        int, typer.Option(help="Trials in the study in total; running it again tops it up.")
    ] = 50,
    sampler: Annotated[str, typer.Option(help="tpe, random, cmaes or qmc.")] = "tpe",
    sampler_seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler (several workers: seed + index).")
    ] = None,
    pruner: Annotated[
        str, typer.Option(help="none, median or hyperband (on per-epoch validation accuracy).")
    ] = "none",
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
    set_: SetOption = None,
    options: dict[str, Any] | None = None,
    trial: dict[str, Any] | None = None,
) -> None:
    """Search γ, σ, τ, the variant (bop, bop2 biased/unbiased), the norm and per-hyperparameter
    schedules with an Optuna sampler, optionally pruning weak trials. Each trial's value is its
    final validation accuracy."""
    from dataclasses import replace

    from bopsweep.search import SearchSpace, load_space_file, parse_fixed, parse_range
    from bopsweep.studies import optuna_study

    options, trial = options or {}, trial or {}
    search_space = load_space_file(space) if space is not None else SearchSpace()
    ranges = dict(search_space.ranges)
    for name, text in (("gamma", gamma), ("sigma", sigma), ("tau", tau)):
        if text is not None:
            ranges[name] = parse_range(name, text)
    fixed = {**search_space.fixed, **parse_fixed(fix or [])}
    given = _given(trial)
    if "optimizer" in given or "unbiased" in given:  # a chosen optimizer fixes the variant
        opt = given.get("optimizer", "bop2")
        fixed["variant"] = (
            opt
            if opt == "bop"
            else "bop2-" + ("unbiased" if given.get("unbiased", True) else "biased")
        )
    if "norm" in given:
        fixed["norm"] = given["norm"]
    search_space = replace(search_space, ranges=ranges, fixed=fixed)
    base = _study_base({k: v for k, v in trial.items() if k not in ("optimizer", "unbiased")}, set_)
    spec = optuna_study(
        options.get("study") or "optuna-search",
        base,
        search_space,
        trials,
        sampler,
        sampler_seed,
        pruner,
    )
    _dispatch(spec, options, trial)


Database = Annotated[
    Path | None,
    typer.Argument(
        help="A SQLite database file (same as --storage sqlite:///FILE).", show_default=False
    ),
]
StorageOption = Annotated[str | None, typer.Option(help=DISPATCH_OPTIONS["storage"][1].help)]
StudyOption = Annotated[
    str | None, typer.Option(help="Study name. (default: the database's only study)")
]


# Options of the commands that join an existing study.
JOIN_OPTIONS: dict[str, tuple] = {
    "data_dir": _opt(
        "Data folder, if not the one the study was made with.", annotation=Path | None
    ),
    "device": _opt("auto, cpu or cuda. (default: the study's)", annotation=str | None),
    **{
        k: DISPATCH_OPTIONS[k]
        for k in (
            "gpus",
            "per_gpu",
            "workers",
            "max_retries",
            "checkpoint_dir",
            "heartbeat_interval",
            "grace_period",
            "max_trials",
            "quiet",
        )
    },
}


def _join(
    database: Path | None,
    storage: str | None,
    study: str | None,
    options: dict[str, Any],
    worker_index: int = 0,
) -> None:
    """Run an existing study's trials on this machine, with its stored definition."""
    from bopsweep.config import StudySpec
    from bopsweep.store import SPEC_ATTR, Store, storage_url

    url = storage_url(storage, database)
    # read-only until every option is checked: bad input changes nothing
    optuna_study = Store.open_readonly(url).load(study)
    spec = StudySpec.from_dict(optuna_study.user_attrs[SPEC_ATTR])
    trial = {"data_dir": options.pop("data_dir", None), "device": options.pop("device", None)}
    _dispatch(spec, {**options, "storage": url, "worker_index": worker_index}, trial)


@app.command()
@user_errors
@with_options(JOIN_OPTIONS, into="options")
def resume(
    database: Database = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Continue a study: trials interrupted (Ctrl-C, a killed driver) continue from their last
    checkpoint, then every queued trial runs. Finished trials are never re-run."""
    _join(database, storage, study, options or {})


@app.command()
@user_errors
@with_options(JOIN_OPTIONS, into="options")
def worker(
    database: Database = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Join a study from another machine (a shared PostgreSQL or MySQL --storage) and run its
    queued or sampled trials on this machine's GPUs (or CPU) until the study is done.

    Start one per machine; a configuration is completed once however many workers race for
    it. Trials of a worker that died are failed after --grace-period without a heartbeat and
    re-queued; they continue from their checkpoint where --checkpoint-dir is shared."""
    import hashlib
    import os
    import socket

    # a distinct index per worker: Optuna samplers seeded apart, so suggestions do not repeat
    tag = f"{socket.gethostname()}-{os.getpid()}".encode()
    _join(
        database,
        storage,
        study,
        options or {},
        worker_index=1 + int(hashlib.sha1(tag).hexdigest(), 16) % 999_983,
    )


@app.command()
@user_errors
def status(
    database: Database = None, storage: StorageOption = None, study: StudyOption = None
) -> None:
    """The trials of a study: state, epochs done, final and best validation accuracy, and why
    a trial failed."""
    from rich.table import Table

    from bopsweep.report import trials_frame
    from bopsweep.store import SPEC_ATTR, Store, redact, storage_url

    url = storage_url(storage, database)
    store = Store.open_readonly(url)
    optuna_study = store.load(study)
    frame = trials_frame(store, optuna_study)
    counts = frame["state"].value_counts().to_dict() if not frame.empty else {}
    title = f"study {optuna_study.study_name} in {redact(url)}: " + ", ".join(
        f"{n} {s.lower()}" for s, n in sorted(counts.items())
    )
    table = Table(title=title, title_justify="left")
    for column in (
        "trial",
        "configuration",
        "state",
        "epochs",
        "final val acc",
        "best val acc",
        "note",
    ):
        table.add_column(column)
    for _, t in frame.iterrows():
        state = (
            t["state"] if t["failure"] is None or t["state"] != "FAIL" else f"FAIL ({t['failure']})"
        )
        table.add_row(
            str(t["number"]),
            t["label"] or str(t["config_id"]),
            state,
            str(int(t["epochs_done"] or 0)),
            _fmt(t["final_val_acc"]),
            _fmt(t["best_val_acc"]),
            _note(t),
        )
    console = _console()
    console.print(table)
    complete = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    if not complete.empty:
        best = complete.loc[complete["final_val_acc"].idxmax()]
        console.print(
            f"best: trial {best['number']} ({best['label'] or best['config_id']}), "
            f"final val acc {best['final_val_acc']:.4f}"
        )
    if optuna_study.user_attrs[SPEC_ATTR]["kind"] == "optuna":
        from bopsweep.report import param_importances

        console.print(param_importances(optuna_study))


def _note(t: Any) -> str:
    if t["state"] == "PRUNED" and t.get("pruned_at_epoch") is not None:
        return f"pruned at epoch {int(t['pruned_at_epoch'])}"
    reason = t["fail_reason"]
    return reason if isinstance(reason, str) else ""  # pandas gives NaN where none is set


def _console() -> Any:
    """A rich console; wide when writing to a file or pipe, so log lines do not wrap."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _fmt(value: Any) -> str:
    try:
        return "" if value is None or value != value else f"{float(value):.4f}"
    except (TypeError, ValueError):
        return ""


@app.command()
@user_errors
def export(
    database: Database = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "trials.csv"
    ),
    metrics: Annotated[
        bool, typer.Option("--metrics", help="Write the per-epoch metrics instead of the trials.")
    ] = False,
    steps: Annotated[
        bool, typer.Option("--steps", help="Write the per-logged-step π_t instead of the trials.")
    ] = False,
    format: Annotated[str, typer.Option(help="csv or json.")] = "csv",
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing output file (never a database)."),
    ] = False,
) -> None:
    """Write a study's trials (or its metrics) to CSV or JSON through pandas."""
    from bopsweep.files import atomic_open
    from bopsweep.report import metrics_frame, trials_frame
    from bopsweep.store import Store, storage_url

    if format not in ("csv", "json"):
        raise UserError(f"--format must be csv or json, got {format!r}")
    if metrics and steps:
        raise UserError("give --metrics or --steps, not both")
    url = storage_url(storage, database)
    check_output_file(output, force, url)
    store = Store.open_readonly(url)
    optuna_study = store.load(study)
    if metrics or steps:
        frame = metrics_frame(store, optuna_study, steps=steps)
    else:
        frame = trials_frame(store, optuna_study).drop(columns=["trial_id"], errors="ignore")
    try:
        with atomic_open(output, "w", newline="") as f:
            if format == "csv":
                frame.to_csv(f, index=False)
            else:
                frame.to_json(f, orient="records", indent=1)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}") from None
    typer.echo(f"wrote {len(frame)} rows to {output}")


def check_output_file(output: Path, force: bool, url: str) -> None:
    """A file a command may write: never a database (the study's or any other), a folder or a
    file in a missing folder; an existing file only with ``--force``."""
    from bopsweep.files import is_sqlite_file
    from bopsweep.store import database_file

    db = database_file(url)
    target = Path(os.path.realpath(output))
    if db is not None and target == db:
        raise UserError(f"{output} is the study's database; write the export to another file")
    if (
        db is not None
        and target.parent == db.parent
        and target.name in (db.name + "-journal", db.name + "-wal", db.name + "-shm")
    ):
        raise UserError(f"{output} is a file SQLite keeps beside the database; choose another")
    if output.is_symlink() and not output.exists():
        raise UserError(f"{output} is a broken link; give a plain file name")
    if output.exists() and not (output.is_file() or output.is_dir()):
        raise UserError(f"{output} is not a regular file (a device or a fifo?)")
    if output.is_dir():
        raise UserError(f"{output} is a folder; give a file name, e.g. {output / 'trials.csv'}")
    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: folder {output.parent} does not exist")
    if is_sqlite_file(output):
        raise UserError(f"{output} is a SQLite database; bopsweep never overwrites a database")
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to replace it")


@app.command()
@user_errors
def studies(database: Database = None, storage: StorageOption = None) -> None:
    """List the studies in a database with their kind and trial counts."""
    from rich.table import Table

    from bopsweep.store import SPEC_ATTR, Store, redact, storage_url

    url = storage_url(storage, database)
    store = Store.open_readonly(url)
    table = Table(title=f"studies in {redact(url)}", title_justify="left")
    for column in ("study", "kind", "complete", "running", "queued", "failed", "description"):
        table.add_column(column)
    for s in store.storage.get_all_studies():
        spec = s.user_attrs.get(SPEC_ATTR)
        if spec is None:
            continue
        trials = store.storage.get_all_trials(s._study_id, deepcopy=False)
        n = {
            state: sum(t.state.name == state for t in trials)
            for state in ("COMPLETE", "RUNNING", "WAITING", "FAIL")
        }
        table.add_row(
            s.study_name,
            spec["kind"],
            str(n["COMPLETE"]),
            str(n["RUNNING"]),
            str(n["WAITING"]),
            str(n["FAIL"]),
            spec.get("description", ""),
        )
    _console().print(table)


@app.command()
@user_errors
def delete(
    database: Database = None,
    storage: StorageOption = None,
    study: Annotated[str, typer.Option(help="The study to delete (required).")] = "",
    checkpoints: Annotated[
        bool,
        typer.Option("--checkpoints", help="Also delete the study's trial folders."),
    ] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help=DISPATCH_OPTIONS["checkpoint_dir"][1].help)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study: its trials, their metrics and (with --checkpoints) its trial folders.
    Refused while a driver runs on the database or any of its trials is running."""
    import shutil

    from bopsweep.store import Store, checkpoint_root, driver_lock, redact, storage_url

    if not study:
        raise UserError("name the study to delete: --study NAME ('bopsweep studies' lists them)")
    url = storage_url(storage, database)
    store = Store(url)
    with driver_lock(url):
        optuna_study = store.load(study)
        trials = optuna_study.get_trials(deepcopy=False)
        running = sum(t.state.name == "RUNNING" for t in trials)
        if running:
            raise UserError(
                f"study {study} has {running} running trial(s) (a worker on another machine?); "
                "stop its workers first"
            )
        folder = checkpoint_root(url, study, checkpoint_dir) if checkpoints else None
        what = f"study {study} ({len(trials)} trials) from {redact(url)}" + (
            f" and its trial folders in {folder}" if folder is not None else ""
        )
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(f"not deleting {what} without confirmation; pass --yes")
            typer.confirm(f"Delete {what}?", abort=True)
        store.delete_study(study)
        if folder is not None and folder.exists():
            try:
                shutil.rmtree(folder)
            except OSError as e:
                raise fail(f"deleted the study but not all of {folder}: {e.strerror}", 1) from None
    typer.echo(f"deleted {what}")


@app.command()
@user_errors
def plot(
    database: Database = None,
    storage: StorageOption = None,
    study: Annotated[
        str | None, typer.Option(help="Study name. (default: every study in the database)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the figures and index.md.")] = Path(
        "figures"
    ),
    format: Annotated[str, typer.Option(help="png, pdf or svg.")] = "png",
    param: Annotated[
        list[str] | None,
        typer.Option(help="Draw the ablation of this swept parameter only; repeatable."),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Add π_t panels for layers: last (the Bop paper's figure), all, or "
            "names like conv1,fc3."
        ),
    ] = None,
) -> None:
    """Draw every figure that fits the studies in a database: ablation, summary, schedule,
    comparison, π_t and Optuna figures, plus an index.md listing them. A study still running is
    drawn as far as it has got."""
    from bopsweep.plots import (
        FORMATS,
        draw_study,
        load_study_data,
        parse_layers,
        swept_params,
        write_index,
    )
    from bopsweep.store import Store, scrub, storage_url

    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    layers = parse_layers(layer)
    store = Store.open_readonly(storage_url(storage, database))
    names = [study] if study is not None else store.bopsweep_studies()
    if not names:
        store.load(None)  # says the database holds no bopsweep study
    datas = [load_study_data(store, store.load(name)) for name in names]
    if param and study is None:
        datas = [d for d in datas if set(param) & set(swept_params(d))]
        if not datas:
            raise UserError(f"no study in the database sweeps {', '.join(param)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror}") from None
    written = {d.name: draw_study(d, out, format, param, layers) for d in datas}
    command = scrub("bopsweep plot " + " ".join(sys.argv[2:]), store.url)
    index = write_index(out, written, command)
    total = sum(len(w) for w in written.values())
    typer.echo(
        f"wrote {total} figures for {len(written)} "
        f"stud{'y' if len(written) == 1 else 'ies'} to {out}/ (list: {index})"
    )
