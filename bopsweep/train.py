"""One trial: train BinaryNet on CIFAR-10 with one configuration, epoch by epoch.

The loop reads top to bottom: schedules set the hyperparameters, forward, backward, the binary
optimizer flips kernels, Adam trains the norm layers, flips are counted on the device. Each
epoch starts by setting up its step of two-step training (:mod:`bopsweep.two_step`) and ends
with the C2I ratio of the kernels against their start (:mod:`bopsweep.flips`). The host
syncs once per ``PROGRESS_EVERY`` steps (only when someone watches) and once per epoch.

With an output folder, every epoch appends its row to ``metrics.csv`` and its logged steps to
``steps.csv`` and then replaces ``checkpoint.pt`` atomically, so a crash or Ctrl-C loses at most
the epoch in progress, and :func:`run_trial` with ``resume=True`` continues from the last
checkpoint. Data order and augmentation draw from a generator seeded per epoch, so a resumed run
on the CPU reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bopsweep.data import DeviceData, load_cifar10, resolve_data_dir, stratified_subset
from bopsweep.defaults import Optimizer
from bopsweep.errors import UserError
from bopsweep.flips import FlipLog, InitialSigns
from bopsweep.models import BinaryNet
from bopsweep.optim import Bop, Bop2ndOrder, LatentAdam
from bopsweep.run_dir import RunDir
from bopsweep.studies.config import TrialConfig
from bopsweep.two_step import TwoStep

PROGRESS_EVERY = 20
LAYOUT = torch.channels_last
HYPER_COLUMNS = ("gamma", "sigma", "tau", "lr")
# Adam for the real-valued parameters, with the Keras defaults the papers used (eps 1e-7).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite: the trial stops with this reason."""


@dataclass
class Progress:
    """What a display sees at a sync point."""

    epoch: int  # 1-based, the epoch in progress
    epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    loss: float
    acc: float
    pi: float | None
    val_acc: float | None = None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} asked for, but CUDA is not available here; use --device cpu"
        )
    return torch.device(name)


def build_model(config: TrialConfig) -> BinaryNet:
    """BinaryNet for ``config``. Only the latent-weight baseline binarises its kernels in the
    forward pass; Bop and Bop2ndOrder kernels enter it as they are, as in the reference code
    (so a Glorot start's first batch runs on the real Glorot kernels; from then on they are ±1,
    and both ways compute the same)."""
    return BinaryNet(
        config.width,
        config.norm,
        config.init,
        quantize_kernels=config.optimizer == Optimizer.LATENT,
    )


def build_optimizers(
    config: TrialConfig, model: BinaryNet
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The binary optimizer for the kernels and Adam for the norm layers."""
    kernels = list(model.binary_parameters())
    if config.optimizer == "bop":
        binary: torch.optim.Optimizer = Bop(
            kernels, gamma=config.initial("gamma"), tau=config.initial("tau"), fused=config.compile
        )
    elif config.optimizer == "bop2":
        binary = Bop2ndOrder(
            kernels,
            gamma=config.initial("gamma"),
            sigma=config.initial("sigma"),
            tau=config.initial("tau"),
            unbiased=config.unbiased,
            eps=config.eps,
            fused=config.compile,
        )
    else:
        # weight decay: classic L2 on the latent kernels only, never on the norm layers
        binary = LatentAdam(
            kernels,
            lr=config.lr,
            betas=ADAM_BETAS,
            eps=ADAM_EPS,
            weight_decay=config.weight_decay,
        )
    real = torch.optim.Adam(
        model.real_parameters(), lr=config.lr, betas=ADAM_BETAS, eps=ADAM_EPS, foreach=True
    )
    return binary, real


class Hyperparams:
    """Sets scheduled hyperparameters in the optimizers' ``param_groups`` before each step."""

    def __init__(
        self,
        config: TrialConfig,
        binary: torch.optim.Optimizer,
        real: torch.optim.Optimizer,
        steps_per_epoch: int,
    ) -> None:
        self.config, self.steps_per_epoch = config, steps_per_epoch
        # the optimizers, not their param_groups: load_state_dict (on resume) replaces the
        # groups with new dicts, which must be the ones the schedules set
        self.optimizers = {name: [binary] for name in ("gamma", "sigma", "tau")}
        self.optimizers["lr"] = [real] + ([binary] if config.optimizer == "latent" else [])
        self.values: dict[str, float | None] = {
            name: getattr(config, name) for name in HYPER_COLUMNS
        }

    def apply(self, step: int) -> None:
        for name, schedule in self.config.schedules.items():
            value = schedule.value(
                self.config.initial(name), step, self.steps_per_epoch, self.config.epochs
            )
            self.values[name] = value
            for optimizer in self.optimizers[name]:
                for group in optimizer.param_groups:
                    group[name] = value


def load_data(config: TrialConfig, device: torch.device) -> tuple[DeviceData, DeviceData]:
    train, test = load_cifar10(resolve_data_dir(_path(config.data_dir), config.download))
    if config.subset is not None:
        idx = stratified_subset(train.labels, config.subset, config.seed)
        train = type(train)(train.images[idx], train.labels[idx])
    if config.val_subset is not None:
        idx = stratified_subset(test.labels, min(config.val_subset, len(test.labels)), config.seed)
        test = type(test)(test.images[idx], test.labels[idx])
    return DeviceData(train, device), DeviceData(test, device)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, data: DeviceData, batch_size: int = 1000
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a split, with one host sync."""
    model.eval()
    totals = torch.zeros(2, device=data.device)
    for x, y in data.batches(batch_size):
        logits = model(x.contiguous(memory_format=LAYOUT))
        totals += torch.stack(
            [F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) == y).sum().float()]
        )
    loss, correct = totals.tolist()
    return loss / len(data), correct / len(data)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The data order and augmentation of an epoch depend on (seed, epoch) alone."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


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
    config = config.resolved()
    run = RunDir(Path(out_dir)) if out_dir is not None else None
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    train, test = load_data(config, device)  # bad data or device: refused before the folder
    state = run.open(config, resume) if run is not None else None
    # channels-last convolutions: 20-25 % faster steps on the CPU (benchmarks/train_step.py)
    model = build_model(config)
    # torch's stubs lack Module.to(device, memory_format=...), which torch accepts
    model = model.to(device, memory_format=LAYOUT)  # type: ignore[call-overload]
    binary_opt, real_opt = build_optimizers(config, model)
    # --compile: Inductor kernels for the model (compiled on the first batch, cached on disk
    # across trials); checkpoints keep the plain model's state_dict
    # (torch.compile of a Module is an OptimizedModule; its stubs say only Callable)
    forward = cast(torch.nn.Module, torch.compile(model)) if config.compile else model
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    hyper = Hyperparams(config, binary_opt, real_opt, steps_per_epoch)
    names = model.binary_layer_names
    flips = FlipLog(names, [p.numel() for p in model.binary_parameters()], config.log_every, device)
    # sign(w_0) for the C2I ratio: the fresh model's (on resume, the same seed built the same
    # start), replaced by the checkpoint's where it has them
    initial = InitialSigns(names, model.binary_parameters())
    two_step = TwoStep(config, model, binary_opt, real_opt)

    epoch, step = 0, 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            binary_opt.load_state_dict(state["binary_opt"])
            real_opt.load_state_dict(state["real_opt"])
            if "initial_signs" in state:  # checkpoints of bopsweep before C2I lack them
                initial.load_state_dict(state["initial_signs"])
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            raise UserError(
                f"the checkpoint in {out_dir} does not fit this configuration ({e})"
            ) from None
        epoch, step = state["epoch"], state["step"]
    history = run.history() if run is not None else []
    if resume and on_resume is not None and run is not None:
        on_resume(history, run.step_history())
    started = time.perf_counter()
    seconds_before = sum(r.get("seconds", 0.0) for r in run.timings()) if run else 0.0

    while epoch < config.epochs:
        epoch_start = time.perf_counter()
        if two_step.begin_epoch(epoch) and config.compile:
            torch._dynamo.reset()  # the layers' forward changed: compile the model again
            forward = cast(torch.nn.Module, torch.compile(model))
        model.train()
        sums = torch.zeros(2, device=device)  # loss·n, correct: summed on the device
        seen = 0
        generator = epoch_generator(config.seed, epoch, device)
        for i, (x, y) in enumerate(train.batches(config.batch_size, generator, config.augment)):
            hyper.apply(step)
            logits = forward(x.contiguous(memory_format=LAYOUT))
            loss = F.cross_entropy(logits, y)
            binary_opt.zero_grad(set_to_none=True)
            real_opt.zero_grad(set_to_none=True)
            loss.backward()
            binary_opt.step()
            real_opt.step()
            step += 1
            flips.record(step, binary_opt.flip_counts)  # type: ignore[attr-defined]
            sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum()])
            seen += len(y)
            if on_progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                on_progress(
                    _progress(epoch, config.epochs, i + 1, steps_per_epoch, sums, seen, flips)
                )

        loss_sum, correct = sums.tolist()
        if not math.isfinite(loss_sum):
            raise TrialDiverged(f"the training loss became {loss_sum} in epoch {epoch + 1}")
        val_loss, val_acc = evaluate(forward, test)
        epoch_flips, step_rows = flips.end_epoch(step)
        epoch += 1
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            **hyper.values,
            **epoch_flips,
            **initial.c2i(model.binary_parameters()),
        }
        step_rows = [{"epoch": epoch, **r} for r in step_rows]
        history.append(row)
        if run is not None:
            run.append(row, step_rows, seconds=time.perf_counter() - epoch_start)
            run.save_checkpoint(
                {
                    "epoch": epoch,
                    "step": step,
                    "model": model.state_dict(),
                    "binary_opt": binary_opt.state_dict(),
                    "real_opt": real_opt.state_dict(),
                    "initial_signs": initial.state_dict(),
                }
            )
        if on_epoch is not None:
            on_epoch(row, step_rows)
        if on_progress is not None:
            on_progress(
                Progress(
                    epoch,
                    config.epochs,
                    steps_per_epoch,
                    steps_per_epoch,
                    row["train_loss"],
                    row["train_acc"],
                    row["pi"],
                    val_acc,
                )
            )

    seconds = seconds_before + time.perf_counter() - started
    summary = summarize(history, seconds)
    if run is not None:
        run.write_summary(summary)
    return summary


def summarize(history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Final and best validation accuracy of a finished run."""
    if not history:
        return {"epochs": 0, "seconds": seconds}
    best = max(history, key=lambda r: r["val_acc"])
    return {
        "epochs": history[-1]["epoch"],
        "final_val_acc": history[-1]["val_acc"],
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_train_acc": history[-1]["train_acc"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / len(history),
    }


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


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None
