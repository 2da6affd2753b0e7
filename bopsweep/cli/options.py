"""The command line's options, typed, each written once.

Typer has no option groups, so options that several commands share are fields of small
dataclasses (the trial's :class:`~bopsweep.cli.trial_options.TrialOptions`, made from the
declared settings, :class:`StudyOptions`, :class:`Placement`, :class:`JoinOptions`);
:func:`with_groups` adds a group's fields to a command's parameters and hands the command one
typed instance per group. Choices are the enums of :mod:`bopsweep.defaults`, so ``--help``
lists them and Click refuses anything else; defaults and their help texts come from there too.

Every option is in one of the ``--help`` panels below (Typer's ``rich_help_panel``): a group's
fields in its group's panel unless a field names its own, a command's own options where they
say.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from copy import copy
from dataclasses import MISSING, dataclass, fields
from functools import cache, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

import typer
from typer.models import OptionInfo

from bopsweep import defaults as d
from bopsweep.cli.trial_options import PANEL_TRIAL, TrialOptions
from bopsweep.defaults import Optimizer
from bopsweep.errors import UserError

if TYPE_CHECKING:
    from bopsweep.driver import DispatchOptions

F = TypeVar("F", bound=Callable[..., Any])

# The panels of a command's --help
PANEL_STUDY = "Study"  # which study, its points, how it is made
PANEL_DISPATCH = "Dispatch"  # where and how this machine runs the trials
PANEL_STORAGE = "Storage"  # the database and the trial folders
PANEL_OUTPUT = "Output"  # what a reading command writes, and in which form
PANELS = (PANEL_TRIAL, PANEL_STUDY, PANEL_DISPATCH, PANEL_STORAGE, PANEL_OUTPUT)

_bop, _bop2 = d.OPTIMIZER_DEFAULTS[Optimizer.BOP], d.OPTIMIZER_DEFAULTS[Optimizer.BOP2]


STORAGE_HELP = (
    f"Database URL: sqlite:///FILE.db or postgresql://… (default: ${d.STORAGE_ENV} or "
    f"{d.DEFAULT_STORAGE})"
)
CHECKPOINT_HELP = "Trial folders and checkpoints. (default: next to the database, e.g. study.ckpt/)"
Storage = Annotated[str | None, typer.Option(help=STORAGE_HELP, rich_help_panel=PANEL_STORAGE)]
CheckpointDir = Annotated[
    Path | None, typer.Option(help=CHECKPOINT_HELP, rich_help_panel=PANEL_STORAGE)
]


@dataclass
class Placement:
    """Where and how a study's trials run on this machine."""

    gpus: Annotated[
        str | None,
        typer.Option(
            help="GPUs to use, e.g. 0,1: indices into the visible GPUs (those of an inherited "
            "CUDA_VISIBLE_DEVICES, if set). (default: all visible; none → CPU)"
        ),
    ] = None
    per_gpu: Annotated[
        int | None, typer.Option(help=f"Trials per GPU at once. (default: {d.PER_GPU})")
    ] = None
    workers: Annotated[
        int | None, typer.Option(help="Trial processes at once on the CPU. (default: 1)")
    ] = None
    allow_oversubscribe: Annotated[
        bool,
        typer.Option(
            "--allow-oversubscribe",
            help="Run more trial processes at once (--workers, GPUs × --per-gpu) than this "
            "machine's cores, or its memory at ~1 GiB each, hold.",
        ),
    ] = False
    max_retries: Annotated[int, typer.Option(help="Re-queue a crashed trial this many times.")] = (
        d.MAX_RETRIES
    )
    heartbeat_interval: Annotated[
        int, typer.Option(help="Seconds between heartbeats of running trials (shared databases).")
    ] = d.HEARTBEAT_INTERVAL
    grace_period: Annotated[
        int,
        typer.Option(
            help="Seconds without a heartbeat before another worker fails and re-queues a trial "
            "(at least twice the interval)."
        ),
    ] = d.GRACE_PERIOD
    checkpoint_dir: CheckpointDir = None
    max_trials: Annotated[
        int,
        typer.Option(
            help="Refuse a study of more trials than this (a guard against typos in huge grids)."
        ),
    ] = d.MAX_TRIALS
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Plain log lines instead of the live table.")
    ] = False
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Also write each trial's curves and hyperparameters as a TensorBoard run, "
            "DIR/STUDY/NUMBER-LABEL, epoch by epoch (view: tensorboard --logdir DIR).",
        ),
    ] = None
    cold_starts: Annotated[
        bool,
        typer.Option(
            "--cold-starts",
            help="Start every trial process from scratch instead of forking it from a process "
            "that has imported torch and loaded the data (warm starts, Linux; one for all CPU "
            "slots, one per GPU).",
        ),
    ] = not d.WARM_STARTS
    stack: Annotated[
        int,
        typer.Option(
            metavar="K",
            help="Train up to K queued trials that share width, norm, batch size, seed and data "
            "in one process as one stacked model; each stays its own trial (metrics, checkpoint, "
            "pruning, resume). Pays on a GPU; on the CPU it saves only per-trial overhead.",
        ),
    ] = d.STACK

    def dispatch_options(
        self, storage: str, device: str, data_dir: Path | None, **more: Any
    ) -> DispatchOptions:
        """The driver's options: these, and where the study is and its trials' data."""
        from bopsweep.driver import DispatchOptions

        return DispatchOptions(
            storage=storage,
            checkpoint_dir=self.checkpoint_dir,
            device=device,
            gpus=self.gpu_list(),
            per_gpu=self.per_gpu,
            workers=self.workers,
            oversubscribe=self.allow_oversubscribe,
            max_retries=self.max_retries,
            data_dir=str(data_dir) if data_dir else None,
            max_trials=self.max_trials,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            tensorboard=self.tensorboard,
            warm_starts=not self.cold_starts,
            stack=self.stack,
            **more,
        )

    def gpu_list(self) -> list[int] | None:
        if self.gpus is None:
            return None
        try:
            return [int(g) for g in self.gpus.split(",") if g.strip()]
        except ValueError:
            raise UserError(f"--gpus takes GPU indices like 0,1,2; got {self.gpus!r}") from None


@dataclass
class StudyOptions:
    """The study a study command makes (or tops up)."""

    storage: Storage = None
    study: Annotated[
        str | None, typer.Option(help="Study name. (default: from the command or file)")
    ] = None
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Repeat every configuration with K seeds (seed, seed+1, …). (default: 1)"
        ),
    ] = None
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Change the base point, KEY=VALUE (e.g. sigma=1e-2); repeatable."
        ),
    ] = None
    queue_only: Annotated[
        bool,
        typer.Option(
            "--queue-only",
            help="Create the study and queue its trials, run none (then start 'bopsweep worker' "
            "on each machine).",
        ),
    ] = False
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check everything, then print the plan (trials, those already in the study, a "
            "rough time estimate) and exit, creating nothing: no database, lock or folder.",
        ),
    ] = False

    def seed_count(self) -> int:
        if self.seeds is not None and self.seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {self.seeds}")
        return self.seeds or 1


@dataclass
class JoinOptions:
    """What a command that joins an existing study may change about where it runs."""

    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder, if not the one the study was made with.")
    ] = None
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda. (default: the study's)")
    ] = None
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check everything, then print what is left to run and exit, changing nothing.",
            rich_help_panel=PANEL_STUDY,
        ),
    ] = False


# Options of single commands, shared by several
Database = Annotated[
    Path | None,
    typer.Argument(
        help="A SQLite database file (same as --storage sqlite:///FILE).", show_default=False
    ),
]
StudyName = Annotated[
    str | None,
    typer.Option(
        help="Study name. (default: the database's only study)", rich_help_panel=PANEL_STUDY
    ),
]


def _sci(value: float) -> str:
    """1e-07 → 1e-7: how the paper and the help texts write small rates."""
    mantissa, _, exponent = f"{value:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


GammaHelp = f"Adaptivity rate γ. (default: bop {_sci(_bop['gamma'])}, bop2 {_sci(_bop2['gamma'])})"
SigmaHelp = f"Second-moment rate σ (bop2). (default: {_sci(_bop2['sigma'])})"
TauHelp = f"Threshold τ. (default: bop {_sci(_bop['tau'])}, bop2 {_sci(_bop2['tau'])})"


# each group's panel, that of its fields that name none
_GROUP_PANELS: dict[type, str] = {
    TrialOptions: PANEL_TRIAL,
    StudyOptions: PANEL_STUDY,
    Placement: PANEL_DISPATCH,
    JoinOptions: PANEL_TRIAL,
}


def in_panel(annotation: Any, panel: str) -> Any:
    """``annotation`` (``Annotated[type, typer.Option(…)]``) with its option in ``panel``,
    unless the option names a panel of its own. Arguments stay in Typer's "Arguments" panel:
    Typer draws a panel's arguments in a box apart from its options, two boxes of one title."""
    if get_origin(annotation) is not Annotated:
        return annotation
    base, *extras = get_args(annotation)
    placed = []
    for extra in extras:
        if isinstance(extra, OptionInfo) and extra.rich_help_panel is None:
            extra = copy(extra)  # the group's own stays as written
            extra.rich_help_panel = panel
        placed.append(extra)
    args = (base, *placed)
    return Annotated[args]


@cache  # once per group, not per command: evaluating the annotations is start-up time
def _group_parameters(group: type) -> tuple[inspect.Parameter, ...]:
    """A group's fields as keyword-only parameters, each option in its panel."""
    hints = get_type_hints(group, include_extras=True)
    parameters = []
    for f in fields(group):
        assert f.default is not MISSING, f"{group.__name__}.{f.name} needs a default"
        annotation = in_panel(hints[f.name], _GROUP_PANELS[group])
        parameters.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=annotation
            )
        )
    return tuple(parameters)


def _panel_rank(parameter: inspect.Parameter) -> int:
    """Where ``parameter``'s panel comes in :data:`PANELS`."""
    info = next(e for e in get_args(parameter.annotation) if isinstance(e, OptionInfo))
    return PANELS.index(info.rich_help_panel)


def with_groups(**groups: type) -> Callable[[F], F]:
    """Add each group's fields to a command's options, after its own, panel by panel; the
    command receives, for each keyword, one instance of its group (e.g. ``trial:
    TrialOptions``)."""

    def decorate(command: F) -> F:
        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in groups]
        added, owners = [], {}
        for into, group in groups.items():
            for parameter in _group_parameters(group):
                owners[parameter.name] = into
                added.append(parameter)
        added.sort(key=_panel_rank)  # --help shows the panels in the order of their first options

        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            picked: dict[str, dict[str, Any]] = {into: {} for into in groups}
            for name in list(kwargs):
                if name in owners:
                    picked[owners[name]][name] = kwargs.pop(name)
            made = {into: groups[into](**values) for into, values in picked.items()}
            return command(*args, **made, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
