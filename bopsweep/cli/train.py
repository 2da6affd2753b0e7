"""``bopsweep train``: one configuration, in a run folder of its own."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bopsweep import defaults as d
from bopsweep.cli.app import command, fail
from bopsweep.cli.options import (
    PANEL_DISPATCH,
    PANEL_STORAGE,
    PANEL_TRIAL,
    GammaHelp,
    SigmaHelp,
    TauHelp,
    TrialOptions,
    with_groups,
)

if TYPE_CHECKING:
    from bopsweep.readers.tensorboard import TrainBoard
    from bopsweep.studies import TrialConfig


@command(panel=PANEL_TRIAL)
@with_groups(trial=TrialOptions)
def train(
    gamma: Annotated[float | None, typer.Option(help=GammaHelp)] = None,
    sigma: Annotated[float | None, typer.Option(help=SigmaHelp)] = None,
    tau: Annotated[float | None, typer.Option(help=TauHelp)] = None,
    eps: Annotated[float, typer.Option(help="ε of Bop2ndOrder's denominator.")] = d.EPS,
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            help="Schedule a hyperparameter, NAME=KIND(key=value,...); repeatable. "
            "E.g. 'gamma=exponential(rate=0.1, every=100)', "
            "'tau=polynomial(end=1e-2, epochs=500, power=1)'. NAME: gamma, sigma, tau, lr.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Plain lines, one per epoch.", rich_help_panel=PANEL_DISPATCH
        ),
    ] = False,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Also write a TensorBoard run, DIR/NAME (NAME: the output folder's), epoch "
            "by epoch; give it again with --resume to continue that run.",
            rich_help_panel=PANEL_DISPATCH,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder. (default: runs/train-TIMESTAMP)", rich_help_panel=PANEL_STORAGE
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder from its last checkpoint "
            "(its saved settings are used; --epochs may extend it).",
            rich_help_panel=PANEL_STORAGE,
        ),
    ] = None,
    *,
    trial: TrialOptions,
) -> None:
    """Train one configuration and write metrics.csv, steps.csv and a checkpoint per epoch.

    The trial's result is the final validation accuracy (on CIFAR-10's test split); the best
    epoch is recorded too (summary.json).
    """
    hyper = {"gamma": gamma, "sigma": sigma, "tau": tau, "eps": eps}
    out_dir, config = _run_folder_and_config(trial.given(), hyper, schedule, resume, out)
    config = config.resolved()  # validate before importing torch
    board = _board(tensorboard, out_dir, config, resume is not None) if tensorboard else None
    summary = _run(config, out_dir, resume is not None, quiet, board)
    if board is not None:
        board.end("COMPLETE")
    _done(summary, out_dir)


def _done(summary: dict[str, Any], out_dir: Path) -> None:
    """The line a finished run ends with."""
    typer.echo(
        f"done: final val_acc {summary.get('final_val_acc', float('nan')):.4f}, "
        f"best {summary.get('best_val_acc', float('nan')):.4f} "
        f"(epoch {summary.get('best_epoch')}), {summary['seconds']:.1f} s; results in {out_dir}"
    )


def _run_folder_and_config(
    given: dict[str, Any],
    hyper: dict[str, float | None],
    schedule: list[str] | None,
    resume: Path | None,
    out: Path | None,
) -> tuple[Path, TrialConfig]:
    """The run's folder and its configuration, not yet resolved: a resumed run's saved one
    (``given``: the trial options given again), or a new run's from the command line
    (``hyper``: the optimizer's, None where not given)."""
    from bopsweep.errors import UserError
    from bopsweep.studies import TrialConfig
    from bopsweep.trial.run_dir import resumed_config
    from bopsweep.trial.schedules import parse_schedule

    if resume is not None:
        if out is not None and out != resume:
            raise UserError("give either --out (a new run) or --resume (an existing one), not both")
        return resume, resumed_config(resume, given)
    values = {**given, **{k: v for k, v in hyper.items() if v is not None}}
    values["schedules"] = dict(parse_schedule(s) for s in schedule or [])
    config = TrialConfig.from_dict(values, "the command line")
    return out or Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S"), config


def _board(tensorboard: Path, out_dir: Path, config: TrialConfig, resumed: bool) -> TrainBoard:
    """The run's TensorBoard run, DIR/NAME, checked before training starts."""
    from bopsweep.outputs import check_not_own_state
    from bopsweep.readers.tensorboard import TrainBoard, check_logdir

    check_logdir(tensorboard, also=[out_dir])
    board = TrainBoard(tensorboard, out_dir, config, resumed, _warn)
    # DIR/NAME: never the run's own folder (--tensorboard beside --out), in or around it
    check_not_own_state(board.run.folder, None, holds=True, also=[out_dir])
    board.check()
    return board


def _run(
    config: TrialConfig, out_dir: Path, resumed: bool, quiet: bool, board: TrainBoard | None
) -> dict[str, Any]:
    """Train the run on a display; its summary. A run that diverged, could not be written or
    was interrupted ends the command here, with its line and exit code."""
    from bopsweep.cli.display import TrainDisplay
    from bopsweep.trial.train import TrialDiverged, run_trial

    with TrainDisplay(quiet=quiet or not sys.stderr.isatty()) as display:
        on_epoch = display.epoch
        if board is not None:
            on_epoch = _both(display.epoch, board.epoch)
        try:
            return run_trial(
                config,
                out_dir,
                resume=resumed,
                on_progress=display.progress,
                on_epoch=on_epoch,
                on_resume=board.resumed if board is not None else None,
            )
        except TrialDiverged as e:
            if board is not None:
                board.end("FAIL")
            raise fail(f"trial stopped: {e}", code=1) from None
        except OSError as e:  # a full disk, a folder gone: the epochs before it are saved
            if board is not None:
                board.end(None)
            display.close()
            raise fail(
                f"cannot write the run ({e.strerror or e}); the epochs up to its last "
                f"checkpoint are saved. Continue with: bopsweep train --resume {out_dir}",
                code=1,
            ) from None
        except KeyboardInterrupt:
            if board is not None:
                board.end(None)
            display.close()
            typer.echo(
                f"interrupted; finished epochs are saved. Continue with: "
                f"bopsweep train --resume {out_dir}",
                err=True,
            )
            raise typer.Exit(130) from None


def _both(first: Callable[..., Any], second: Callable[..., Any]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        first(*args)
        second(*args)

    return call


def _warn(text: str) -> None:
    """A problem that does not stop the run (e.g. TensorBoard files that cannot be written)."""
    typer.echo(f"bopsweep: warning: {text}", err=True)
