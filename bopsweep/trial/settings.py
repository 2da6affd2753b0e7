"""Every setting of a trial, declared once.

A :class:`Setting` says what a trial setting is (its type, default, valid range, unit, help),
how studies use it (log-scaled, sweepable, schedulable, one of the paper's studied γ, σ, τ) and
where it belongs (shared by the members of a stack, kept out of a trial's identity because it
only says where the trial runs, or left out of the identity at the value it had before it
existed). Everything else is derived from :data:`SETTINGS`:

- the command line's trial options (:mod:`bopsweep.cli.trial_options`): flag, type, help, panel;
- reading from TOML, JSON, the database and ``--set`` (:func:`bopsweep.trial.config.check_field`,
  :func:`~bopsweep.trial.config.parse_field`) and the range checks of
  :meth:`~bopsweep.trial.config.TrialConfig.validate`, also over a schedule's whole run;
- what a grid may sweep, what a schedule study and the Optuna search vary, the search's bounds;
- the plan's identity (:func:`bopsweep.studies.plan.config_id`) and its Optuna params;
- which configurations may share a stack (:func:`bopsweep.trial.config.stack_key`).

:class:`~bopsweep.trial.config.TrialConfig` is the typed record of these settings: its fields
are these names in this order with these defaults (``tests/test_settings.py`` holds them equal),
so a type checker sees every field. Cross-setting rules (two-step shorter than the run, weight
decay for the latent optimizer only, a schedule of a setting the optimizer uses) live in
:meth:`~bopsweep.trial.config.TrialConfig.validate`.

Imports only :mod:`bopsweep.defaults`, so ``bopsweep --help`` stays fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from bopsweep import defaults as d
from bopsweep.defaults import Choice, Init, Norm, Optimizer


@dataclass(frozen=True)
class Range:
    """The valid values of a number: ``low`` < x (or <= when ``low_closed``), x <= ``high``
    (or < when not ``high_closed``)."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = True
    text: str = ""  # how messages write it, when not the derived form (e.g. "[0, 2^32)")

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        """``>= 1``, ``> 0`` or ``in (0, 1]``: how a message says what is valid."""
        if self.high == math.inf and not self.text:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}"
        return f"in {self.interval}"

    @property
    def interval(self) -> str:
        """The range as an interval, e.g. ``(0, 1]`` or ``[0, inf)``."""
        if self.text:
            return self.text
        low = f"{'[' if self.low_closed else '('}{self.low:g}"
        high = "inf)" if self.high == math.inf else f"{self.high:g}"
        if self.high != math.inf:
            high += "]" if self.high_closed else ")"
        return f"{low}, {high}"


POSITIVE = Range(0.0)
NON_NEGATIVE = Range(0.0, low_closed=True)
RATE = Range(0.0, 1.0)  # γ and σ: exponential-average rates
COUNT = Range(1.0, low_closed=True)  # integers >= 1


@dataclass(frozen=True)
class Setting:
    """One trial setting. ``kind`` is float, int, bool or str; ``optional`` allows None (the
    optimizer's default, or off, or everything)."""

    name: str
    kind: type
    default: Any
    help: str
    range: Range | None = None
    choices: type[Choice] | None = None
    optional: bool = False
    unit: str = ""
    # how studies use it
    log: bool = False  # log-scaled: decades in grids and searches, pow10 ablations
    sweepable: bool = True  # a grid may vary it (--param NAME)
    schedulable: bool = False  # may follow a schedule over the run (Fig. 4)
    studied: bool = False  # one of the paper's γ, σ, τ: default grid decades, search space
    # where it belongs
    shared: bool = False  # the members of a stack share it (one forward pass serves them all)
    local: bool = False  # says where the trial runs, not what it computes: not its identity
    core: bool = False  # always an Optuna param of a bopsweep trial (when set)
    since: tuple[Any, ...] = ()  # (value,): added later; left out of the identity at this value
    # the command line
    option: bool = True  # a --flag on train and every study command
    flags: tuple[str, ...] = ()  # Typer's declarations when not --NAME: "--augment/--no-augment"
    metavar: str | None = None
    default_text: str | None = None  # "(default: ...)" when not the default itself; "" for none
    path: bool = False  # a folder on this machine: a Path on the command line

    @property
    def flag(self) -> str:
        """How messages name it: ``batch-size``."""
        return self.name.replace("_", "-")

    def help_text(self) -> str:
        """The help line: what it is, its unit, its default."""
        text = self.help
        shown = self.default_text
        if shown is None:
            shown = "" if self.default is None else _shown(self.default)
            if shown and self.unit:
                shown += f" {self.unit}"
        return f"{text} (default: {shown})" if shown else text


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# In TrialConfig's field order.
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "optimizer", str, d.OPTIMIZER, "Binary optimizer; bop2 is Bop2ndOrder, latent is "
            "Adam + STE.", choices=Optimizer, core=True,
        ),
        Setting(
            "unbiased", bool, False, "Bop2ndOrder variant, paper Eq. 10.", core=True,
            flags=("--unbiased/--biased",),
            default_text="train --biased; studies --unbiased, the paper's base",
        ),
        Setting(
            "gamma", float, None, "Adaptivity rate γ.", range=RATE, optional=True, log=True,
            schedulable=True, studied=True, core=True, option=False,
        ),
        Setting(
            "sigma", float, None, "Second-moment rate σ (bop2).", range=RATE, optional=True,
            log=True, schedulable=True, studied=True, core=True, option=False,
        ),
        Setting(
            "tau", float, None, "Threshold τ.", range=NON_NEGATIVE, optional=True, log=True,
            schedulable=True, studied=True, core=True, option=False,
        ),
        Setting(
            "eps", float, d.EPS, "ε of Bop2ndOrder's denominator.", range=POSITIVE, log=True,
            option=False,
        ),
        Setting(
            "lr", float, d.LR, "Adam learning rate of the real-valued parameters.",
            range=POSITIVE, log=True, schedulable=True,
        ),
        Setting(
            "schedules", dict, {}, "Schedules of γ, σ, τ or lr, NAME → schedule.",
            sweepable=False, option=False,
        ),
        Setting(
            "weight_decay", float, d.WEIGHT_DECAY, "Classic L2 weight decay (added to the "
            "gradient, not AdamW) on the latent kernels; latent optimizer only; 0 in step 2 of "
            "--two-step.", range=NON_NEGATIVE, since=(0.0,),
        ),
        Setting(
            "two_step", int, None, "Two-step training (latent optimizer): the first EPOCHS epochs "
            "use real kernels with binary activations, the rest binary kernels from those "
            "weights, with fresh Adam moments.", range=COUNT, optional=True, unit="epochs",
            since=(None,), metavar="EPOCHS", default_text="off",
        ),
        Setting("epochs", int, d.EPOCHS, "Epochs per trial.", range=COUNT),
        Setting("batch_size", int, d.BATCH_SIZE, "Batch size.", range=COUNT, shared=True),
        Setting(
            "width", float, d.WIDTH, "Width multiplier of BinaryNet, 1 = the paper's.",
            range=POSITIVE, shared=True,
        ),
        Setting(
            "norm", str, d.NORM, "Normalisation.", choices=Norm, shared=True, core=True
        ),
        Setting(
            "init", str, d.INIT, "Kernel start: glorot (reference code) or sign (±1, paper).",
            choices=Init,
        ),
        Setting(
            "data_dir", str, None, "Folder holding cifar-10-batches-py (or that folder itself).",
            optional=True, shared=True, local=True, sweepable=False, path=True,
        ),
        Setting(
            "download", bool, False, "Download CIFAR-10 to $BOPSWEEP_DATA (~/.cache/bopsweep) "
            "if missing.", shared=True, local=True, sweepable=False, flags=("--download",),
            default_text="",
        ),
        Setting(
            "subset", int, None, "Train on a stratified, seeded subset of N images.",
            range=COUNT, optional=True, shared=True,
        ),
        Setting(
            "val_subset", int, None, "Validate on a stratified subset of N test images.",
            range=COUNT, optional=True, shared=True,
        ),
        Setting(
            "augment", bool, True, "Pad-crop-flip augmentation of training batches.",
            shared=True, flags=("--augment/--no-augment",),
        ),
        Setting(
            "compile", bool, False, "Compile the model and fuse the optimizer step with "
            "torch.compile (the first batch pays the compile time; Inductor caches it across "
            "trials).", flags=("--compile",), default_text="",
        ),
        Setting(
            "device", str, d.DEVICE, "auto, cpu, cuda or cuda:N.", shared=True, local=True,
            sweepable=False,
        ),
        Setting(
            "seed", int, d.SEED, "Seed of the weights, data order and augmentation.",
            range=Range(0.0, d.SEED_LIMIT, low_closed=True, high_closed=False, text="[0, 2^32)"),
            shared=True, core=True,
        ),
        Setting(
            "log_every", int, d.LOG_EVERY, "Steps per logged π_t row (averaged over the window).",
            range=COUNT, unit="steps",
        ),
    )
}  # fmt: skip

FIELDS = tuple(SETTINGS)
# Derived views, each in the settings' order
STUDIED = tuple(n for n, s in SETTINGS.items() if s.studied)  # γ, σ, τ
SCHEDULABLE = tuple(n for n, s in SETTINGS.items() if s.schedulable)
SWEEPABLE = tuple(n for n, s in SETTINGS.items() if s.sweepable)
STACK_SHARED = tuple(n for n, s in SETTINGS.items() if s.shared)
LOCAL = tuple(n for n, s in SETTINGS.items() if s.local)
# Added after studies existed: left out of a trial's identity at these values, so the
# configurations of those studies keep their ids (and their trials and checkpoints).
LATER = {n: s.since[0] for n, s in SETTINGS.items() if s.since}
OPTIONS = tuple(n for n, s in SETTINGS.items() if s.option)


def check_device(device: str) -> bool:
    """Whether ``device`` names one bopsweep can run on: auto, cpu, cuda or cuda:N."""
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?", device) is not None
