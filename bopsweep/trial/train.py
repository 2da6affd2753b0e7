"""One trial: train BinaryNet on CIFAR-10 with one configuration, epoch by epoch.

The loop reads top to bottom: schedules set the hyperparameters, forward, backward, the binary
optimizer flips kernels, Adam trains the norm layers, flips are counted on the device. Each
epoch starts by setting up its step of two-step training (:mod:`bopsweep.trial.two_step`) and ends
with the C2I ratio of the kernels against their start (:mod:`bopsweep.trial.flips`). The host
syncs once per ``PROGRESS_EVERY`` steps (only when someone watches) and once per epoch.

With an output folder, every epoch appends its row to ``metrics.csv`` and its logged steps to
``steps.csv`` and then replaces ``checkpoint.pt`` atomically, so a crash or Ctrl-C loses at most
the epoch in progress, and :func:`run_trial` with ``resume=True`` continues from the last
checkpoint. Data order and augmentation draw from a generator seeded per epoch, so a resumed run
on the CPU reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bopsweep.errors import UserError
from bopsweep.metric_keys import (
    EPOCH,
    PI,
    STEP,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
)
from bopsweep.models import StackedBinaryNet
from bopsweep.trial.best import summarize
from bopsweep.trial.config import STACK_SHARED, TrialConfig
from bopsweep.trial.data import DeviceData
from bopsweep.trial.flips import FlipLog, InitialSigns
from bopsweep.trial.legacy_c2i import C2I_MEANING
from bopsweep.trial.parts import (  # noqa: F401  (the trial's parts, as train exposes them)
    ADAM_BETAS,
    ADAM_EPS,
    LAYOUT,
    PROGRESS_EVERY,
    Hyperparams,
    MemberEnd,
    Progress,
    TrialDiverged,
    build_model,
    build_optimizers,
    epoch_generator,
    evaluate,
    load_data,
    optional_path,
    per_member,
    pick_device,
)
from bopsweep.trial.run_dir import C2I_KEY, RunDir
from bopsweep.trial.two_step import TwoStep


class _Member:
    """One configuration of a run and everything it trains: model, optimizers, schedules, flip
    log, output folder. A lone trial is a stack of one member."""

    def __init__(
        self,
        index: int,
        config: TrialConfig,
        out_dir: Path | None,
        resume: bool,
        device: torch.device,
        steps_per_epoch: int,
    ) -> None:
        self.index, self.config, self.device = index, config, device
        self.run = RunDir(Path(out_dir)) if out_dir is not None else None
        state = self.run.open(config, resume) if self.run is not None else None
        torch.manual_seed(config.seed)  # a member starts as its separate run does
        model = build_model(config)
        # channels-last convolutions: 20-25 % faster steps on the CPU (benchmarks/train_step.py)
        # torch's stubs lack Module.to(device, memory_format=...), which torch accepts
        self.model = model.to(device, memory_format=LAYOUT)  # type: ignore[call-overload]
        self.binary, self.real = build_optimizers(config, self.model)
        # --compile: Inductor kernels for the model (compiled on the first batch, cached on disk
        # across trials); checkpoints keep the plain model's state_dict
        self.compiled: torch.nn.Module | None = None
        self.hyper = Hyperparams(config, self.binary, self.real, steps_per_epoch)
        names = self.model.binary_layer_names
        sizes = [p.numel() for p in self.model.binary_parameters()]
        self.flips = FlipLog(names, sizes, config.log_every, device)
        # sign(w_0) for the C2I ratio: the fresh model's (on resume, the same seed built the
        # same start), replaced by the checkpoint's where it has them
        self.initial = InitialSigns(names, self.model.binary_parameters())
        self.two_step = TwoStep(config, self.model, self.binary, self.real, self.initial)
        self.hyper.clock = self.two_step.schedule_clock
        self.epoch, self.step = 0, 0
        if state is not None:
            try:
                self.model.load_state_dict(state["model"])
                self.binary.load_state_dict(state["binary_opt"])
                self.real.load_state_dict(state["real_opt"])
                if "initial_signs" in state:  # checkpoints of bopsweep before C2I lack them
                    self.initial.load_state_dict(state["initial_signs"])
                if "two_step" in state:  # step 1's best (bopsweep before 0.3: none kept)
                    self.two_step.load_state_dict(state["two_step"])
            except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
                raise UserError(
                    f"the checkpoint in {out_dir} does not fit this configuration ({e})"
                ) from None
            self.epoch, self.step = state["epoch"], state["step"]
        self.history = self.run.history() if self.run is not None else []
        self.started = time.perf_counter()
        self.seconds_before = (
            sum(r.get("seconds", 0.0) for r in self.run.timings()) if self.run else 0.0
        )

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    def begin_epoch(self) -> None:
        """Two-step training's set-up of the epoch; (re)compiles a ``--compile`` model."""
        changed = self.two_step.begin_epoch(self.epoch)
        if self.config.compile and (changed or self.compiled is None):
            torch._dynamo.reset()  # the layers' forward changed: compile the model again
            # (torch.compile of a Module is an OptimizedModule; its stubs say only Callable)
            self.compiled = cast(torch.nn.Module, torch.compile(self.model))

    def zero_grad(self) -> None:
        self.binary.zero_grad(set_to_none=True)
        self.real.zero_grad(set_to_none=True)

    def optimizer_step(self) -> None:
        self.binary.step()
        self.real.step()
        self.step += 1
        self.flips.record(self.step, self.binary.flip_counts)  # type: ignore[attr-defined]

    def end_epoch(
        self, loss_sum: float, correct: float, seen: int, val: tuple[float, float], seconds: float
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Record the epoch just trained: metrics row, logged steps, checkpoint."""
        if not math.isfinite(loss_sum):
            raise TrialDiverged(f"the training loss became {loss_sum} in epoch {self.epoch + 1}")
        epoch_flips, step_rows = self.flips.end_epoch(self.step)
        self.epoch += 1
        row = {
            EPOCH: self.epoch,
            STEP: self.step,
            TRAIN_LOSS: loss_sum / seen,
            TRAIN_ACC: correct / seen,
            VAL_LOSS: val[0],
            VAL_ACC: val[1],
            **self.hyper.values,
            **epoch_flips,
            **self.initial.c2i(self.model.binary_parameters()),
        }
        step_rows = [{EPOCH: self.epoch, **r} for r in step_rows]
        self.history.append(row)
        self.two_step.end_epoch(self.epoch, val[1])  # step 1's best, for step 2 to start from
        if self.run is not None:
            self.run.append(row, step_rows, seconds=seconds)
            self.run.save_checkpoint(
                {
                    "epoch": self.epoch,
                    "step": self.step,
                    "model": self.model.state_dict(),
                    "binary_opt": self.binary.state_dict(),
                    "real_opt": self.real.state_dict(),
                    "initial_signs": self.initial.state_dict(),
                    C2I_KEY: C2I_MEANING,  # metrics.csv's c2i: the paper's, not 0.1's complement
                    **({"two_step": self.two_step.state_dict()} if self.config.two_step else {}),
                }
            )
        return row, step_rows

    def summary(self) -> dict[str, Any]:
        seconds = self.seconds_before + time.perf_counter() - self.started
        summary = summarize(self.history, seconds, self.config.two_step or 0)
        if self.run is not None:
            self.run.write_summary(summary)
        return summary


def _forward(group: list[_Member], grouped: bool) -> torch.nn.Module:
    """The network that trains ``group`` this epoch: one member's model (compiled with
    ``--compile``) or the members stacked, with grouped layers on a GPU (one kernel per layer
    for all members) and member by member on the CPU, where grouped convolutions are slower
    (:class:`~bopsweep.models.StackedBinaryNet`)."""
    if len(group) > 1:
        return StackedBinaryNet([m.model for m in group], grouped=grouped)
    return _network(group[0])


def _member_by_member(group: list[_Member], x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
    """Forward and backward of each member alone on the shared batch (a lone trial's step):
    one graph alive at a time. On the CPU the members' graphs built side by side and freed by
    one backward trained a stack ~3× slower (width 1/8 and 1/4; ``benchmarks/stack.py``).
    Returns each member's logits and loss, detached."""
    logits, losses = [], []
    for m in group:
        out = _network(m)(x)
        loss = F.cross_entropy(out, y)
        m.zero_grad()
        loss.backward()
        logits.append(out.detach())
        losses.append(loss.detach())
    return logits, torch.stack(losses)


def _network(member: _Member) -> torch.nn.Module:
    """A member's model, compiled with ``--compile`` (not ``compiled or model``: a compiled
    module's truth value asks for its length, which BinaryNet has not)."""
    return member.compiled if member.compiled is not None else member.model


def run_trial(
    config: TrialConfig,
    out_dir: Path | None = None,
    *,
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    on_resume: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Train one configuration; returns the summary (also written to ``out_dir/summary.json``).

    ``on_epoch(row, step_rows)`` receives each finished epoch's metrics; ``on_progress`` a
    :class:`Progress` every ``PROGRESS_EVERY`` steps; ``on_resume(rows, step_rows)``, once when
    resuming, the metrics of the epochs done before the checkpoint. Raises
    :class:`TrialDiverged` on a NaN loss, :class:`UserError` on bad input.
    """
    (end,) = run_stack(
        [config],
        [out_dir],
        resume=resume,
        on_progress=None if on_progress is None else lambda _, p: on_progress(p),
        on_epoch=None if on_epoch is None else lambda _, row, steps: on_epoch(row, steps),
        on_resume=None if on_resume is None else lambda _, rows, steps: on_resume(rows, steps),
    )
    if isinstance(end, Exception):
        raise end
    assert end is not None, "a lone trial is never stopped"
    return end


def run_stack(
    configs: Sequence[TrialConfig],
    out_dirs: Sequence[Path | None],
    *,
    resume: bool | Sequence[bool] = False,
    on_progress: Callable[[int, Progress], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any], list[dict[str, Any]]], None] | None = None,
    on_resume: Callable[[int, list[dict[str, Any]], list[dict[str, Any]]], None] | None = None,
    on_end: Callable[[int, MemberEnd], None] | None = None,
    stopped: Callable[[int], bool] = lambda _: False,
    grouped: bool | None = None,
) -> list[MemberEnd | None]:
    """Train K configurations that share data and architecture as one stacked model.

    Members (``configs[k]``, trained in ``out_dirs[k]``) must agree on
    :data:`~bopsweep.trial.config.STACK_SHARED` (architecture, batch size, data and its
    order); each keeps its own hyperparameters, schedules, optimizer state, metrics and
    checkpoint, the same files a separate :func:`run_trial` writes, so either can resume the
    other's; ``resume`` is one flag for all or one per member. Members resumed at different
    epochs wait for each other: each epoch trains the members furthest behind.

    The callbacks are :func:`run_trial`'s with the member's index first; ``on_end(k, end)``
    reports a member's summary, or the :class:`TrialDiverged` or :class:`UserError` that ended
    it alone while the others go on. ``stopped(k)``, asked after each of member k's epochs,
    drops it (pruning). ``grouped`` picks the stacked layers' kind
    (:class:`~bopsweep.models.StackedBinaryNet`); by default grouped on a GPU, member by member
    on the CPU. Returns each member's end (``None``: stopped).
    """
    configs = [c.resolved() for c in configs]
    check_stackable(configs)
    first = configs[0]
    device = pick_device(first.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if grouped is None:
        grouped = device.type != "cpu"
    data = load_data(first, device)  # bad data or device: refused before the folders
    steps_per_epoch = math.ceil(len(data[0]) / first.batch_size)
    ends: list[MemberEnd | None] = [None] * len(configs)

    def end(member: _Member | int, result: MemberEnd) -> None:
        index = member if isinstance(member, int) else member.index
        ends[index] = result
        if on_end is not None:
            on_end(index, result)

    resumes = [resume] * len(configs) if isinstance(resume, bool) else list(resume)
    members: list[_Member] = []
    for k, (config, out_dir) in enumerate(zip(configs, out_dirs, strict=True)):
        try:  # a member whose folder cannot be opened ends alone
            members.append(_Member(k, config, out_dir, resumes[k], device, steps_per_epoch))
        except UserError as e:
            end(k, e)
            continue
        if resumes[k] and on_resume is not None and members[-1].run is not None:
            on_resume(k, members[-1].history, members[-1].run.step_history())

    _train_members(members, grouped, data, steps_per_epoch, end, on_epoch, on_progress, stopped)
    return ends


def _train_members(
    members: list[_Member],
    grouped: bool,
    data: tuple[DeviceData, DeviceData],
    steps_per_epoch: int,
    end: Callable[[_Member, MemberEnd], None],
    on_epoch: Callable[[int, dict[str, Any], list[dict[str, Any]]], None] | None,
    on_progress: Callable[[int, Progress], None] | None,
    stopped: Callable[[int], bool],
) -> None:
    """:func:`run_stack`'s epochs, until no member is left: each trains the members furthest
    behind together (``data``: the training and test sets); a member leaves when it has run
    its epochs, diverged or is ``stopped``, and ``end`` reports how it ended."""
    train, test = data
    while members:
        for m in [m for m in members if m.finished]:
            members.remove(m)
            end(m, m.summary())
        if not members:
            break
        epoch = min(m.epoch for m in members)
        group = [m for m in members if m.epoch == epoch]  # the others wait for them
        epoch_start = time.perf_counter()
        for m in group:
            m.begin_epoch()
        forward = _forward(group, grouped)
        sums, seen = _train_epoch(group, forward, train, epoch, steps_per_epoch, on_progress)
        vals = evaluate(forward, test)
        for (loss_sum, correct_sum), val, m in zip(sums.tolist(), vals, group, strict=True):
            try:
                row, step_rows = m.end_epoch(
                    loss_sum, correct_sum, seen, val, time.perf_counter() - epoch_start
                )
            except TrialDiverged as e:
                members.remove(m)
                end(m, e)
                continue
            if on_epoch is not None:
                on_epoch(m.index, row, step_rows)
            if on_progress is not None:
                on_progress(m.index, _epoch_progress(m, row, val[1], steps_per_epoch))
            if stopped(m.index):
                members.remove(m)


def _epoch_progress(m: _Member, row: dict[str, Any], val_acc: float, steps: int) -> Progress:
    """A member's progress at the end of its epoch, from the epoch's metric row."""
    return Progress(
        m.epoch,
        m.config.epochs,
        steps,
        steps,
        row[TRAIN_LOSS],
        row[TRAIN_ACC],
        row[PI],
        val_acc,
    )


def _train_epoch(
    group: list[_Member],
    forward: torch.nn.Module,
    train: Any,
    epoch: int,
    steps_per_epoch: int,
    on_progress: Callable[[int, Progress], None] | None,
) -> tuple[Tensor, int]:
    """One epoch of training of the members in ``group`` (they share the data and its order);
    each member's summed loss·n and correct count (on the device), and the images seen."""
    first, device = group[0].config, group[0].device
    forward.train()
    sums = torch.zeros(len(group), 2, device=device)  # loss·n, correct: on the device
    seen = 0
    generator = epoch_generator(first.seed, epoch, device)
    for i, (x, y) in enumerate(train.batches(first.batch_size, generator, first.augment)):
        for m in group:
            m.hyper.apply(m.step)
        x = x.contiguous(memory_format=LAYOUT)
        if isinstance(forward, StackedBinaryNet) and forward.grouped:
            logits = forward(x)  # one pass for all members, one backward
            # each member's loss is its own mean; their sum gives each its own gradient
            losses = torch.stack([F.cross_entropy(out, y) for out in logits])
            for m in group:
                m.zero_grad()
            losses.sum().backward()
        else:  # member by member, each graph freed before the next is built
            logits, losses = _member_by_member(group, x, y)
        for m in group:
            m.optimizer_step()
        correct = torch.stack([(out.argmax(1) == y).sum() for out in logits])
        sums += torch.stack([losses.detach() * len(y), correct], dim=1)
        seen += len(y)
        if on_progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            for k, m in enumerate(group):
                p = _progress(
                    epoch, m.config.epochs, i + 1, steps_per_epoch, sums[k], seen, m.flips
                )
                on_progress(m.index, p)
    return sums, seen


def check_stackable(configs: Sequence[TrialConfig]) -> None:
    """Refuse a stack whose members differ in what they must share, or that asks to compile."""
    if not configs:
        raise UserError("a stack needs at least one configuration")
    differ = [n for n in STACK_SHARED if len({json.dumps(getattr(c, n)) for c in configs}) > 1]
    if differ:
        raise UserError(f"stacked trials must share {', '.join(differ)}")
    if len(configs) > 1 and any(c.compile for c in configs):
        raise UserError("--compile applies to a lone trial, not to stacked trials")


def _progress(
    epoch: int,
    epochs: int,
    step: int,
    steps_per_epoch: int,
    sums: Tensor,
    seen: int,
    flips: FlipLog,
) -> Progress:
    pi = flips.latest_pi()
    values = torch.cat([sums, pi.reshape(1) if pi is not None else sums.new_full((1,), np.nan)])
    loss_sum, correct, pi_value = values.tolist()  # one host sync
    return Progress(
        epoch + 1,
        epochs,
        step,
        steps_per_epoch,
        loss_sum / seen,
        correct / seen,
        None if math.isnan(pi_value) else pi_value,
    )
