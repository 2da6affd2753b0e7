"""The ``bopsweep`` command line. Thin: parse, build a config, call the modules that do the work.

Heavy packages (torch, optuna, matplotlib) are imported inside the commands, so ``--help``
stays instant. Exit codes: 0 done, 1 the run failed (e.g. diverged), 2 bad input, 130 Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bopsweep.errors import UserError

app = typer.Typer(
    help="Hyperparameter ablation studies of Bop and Bop2ndOrder on BinaryNet / CIFAR-10.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",
)


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


F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"bopsweep: error: {message}", err=True)
    return typer.Exit(code)


def user_errors(command: F) -> F:
    """Bad input → one line on stderr and exit 2; Ctrl-C → exit 130. Never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as e:
            raise fail(str(e)) from None

    return wrapper  # type: ignore[return-value]


# --- bopsweep train ---------------------------------------------------------------------------


@app.command()
@user_errors
def train(
    optimizer: Annotated[
        str, typer.Option(help="Binary optimizer: bop, bop2 (Bop2ndOrder) or latent (Adam + STE).")
    ] = "bop2",
    unbiased: Annotated[
        bool, typer.Option("--unbiased/--biased", help="Bop2ndOrder variant (paper Eq. 10).")
    ] = False,
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
    lr: Annotated[
        float, typer.Option(help="Adam learning rate of the real-valued parameters.")
    ] = 0.01,
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            help="Schedule a hyperparameter, NAME=KIND(key=value,...); repeatable. "
            "E.g. 'gamma=exponential(rate=0.1, every=100)', "
            "'tau=polynomial(end=1e-2, epochs=500, power=1)'. NAME: gamma, sigma, tau, lr.",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train. (default: 100)")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 100,
    width: Annotated[float, typer.Option(help="Width multiplier of BinaryNet (1 = paper).")] = 1.0,
    norm: Annotated[str, typer.Option(help="Normalisation: batch or layer.")] = "batch",
    init: Annotated[
        str, typer.Option(help="Kernel start: glorot (reference code) or sign (±1, paper).")
    ] = "glorot",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder holding cifar-10-batches-py (or that folder itself)."),
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download CIFAR-10 to $BOPSWEEP_DATA (~/.cache/bopsweep).")
    ] = False,
    subset: Annotated[
        int | None, typer.Option(help="Train on a stratified, seeded subset of N images.")
    ] = None,
    val_subset: Annotated[
        int | None, typer.Option(help="Validate on a stratified subset of N test images.")
    ] = None,
    augment: Annotated[
        bool, typer.Option(help="Pad-crop-flip augmentation of training batches.")
    ] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[
        int, typer.Option(help="Seed of the weights, data order and augmentation.")
    ] = 0,
    log_every: Annotated[
        int, typer.Option(help="Steps per row of steps.csv (π_t averaged over the window).")
    ] = 10,
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
) -> None:
    """Train one configuration and write metrics.csv, steps.csv and a checkpoint per epoch.

    The trial's result is the final validation accuracy (on CIFAR-10's test split); the best
    epoch is recorded too (summary.json).
    """
    from bopsweep.config import TrialConfig
    from bopsweep.schedules import parse_schedule

    if resume is not None:
        if out is not None and out != resume:
            raise UserError("give either --out (a new run) or --resume (an existing one), not both")
        from bopsweep.run_dir import CONFIG

        if not (resume / CONFIG).is_file():
            raise UserError(f"{resume} holds no bopsweep run to resume (no {CONFIG})")
        config = TrialConfig.load(resume / CONFIG)
        if epochs is not None:
            config = TrialConfig.from_dict({**config.to_dict(), "epochs": epochs})
        out_dir = resume
    else:
        config = TrialConfig(
            optimizer=optimizer,
            unbiased=unbiased,
            gamma=gamma,
            sigma=sigma,
            tau=tau,
            eps=eps,
            lr=lr,
            schedules=dict(parse_schedule(s) for s in schedule or []),
            epochs=epochs if epochs is not None else 100,
            batch_size=batch_size,
            width=width,
            norm=norm,
            init=init,
            data_dir=str(data_dir) if data_dir is not None else None,
            download=download,
            subset=subset,
            val_subset=val_subset,
            augment=augment,
            device=device,
            seed=seed,
            log_every=log_every,
        )
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
