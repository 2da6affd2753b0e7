"""The parts a training run is made of: its device, network, optimizers, the hyperparameters in
force at each step, its data and its evaluation (:mod:`bopsweep.trial.train` runs them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bopsweep.defaults import Optimizer
from bopsweep.errors import UserError
from bopsweep.metric_keys import (
    HYPER_COLUMNS,
)
from bopsweep.models import BinaryNet
from bopsweep.optim import Bop, Bop2ndOrder, LatentAdam
from bopsweep.trial.cifar_files import load_cifar10, resolve_data_dir, stratified_subset
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.data import DeviceData

PROGRESS_EVERY = 20
LAYOUT = torch.channels_last
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
        self.clock: Callable[[int, int], tuple[int, int]] = lambda step, _: (step, config.epochs)

    def apply(self, step: int) -> None:
        # the schedules' (step, epochs): the run's, or a two-step run's step's own
        at, epochs = self.clock(step, self.steps_per_epoch)
        for name, schedule in self.config.schedules.items():
            value = schedule.value(self.config.initial(name), at, self.steps_per_epoch, epochs)
            self.values[name] = value
            for optimizer in self.optimizers[name]:
                for group in optimizer.param_groups:
                    group[name] = value


def load_data(config: TrialConfig, device: torch.device) -> tuple[DeviceData, DeviceData]:
    train, test = load_cifar10(resolve_data_dir(optional_path(config.data_dir), config.download))
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
) -> list[tuple[float, float]]:
    """(mean cross-entropy, accuracy) over a split for each member of ``model`` (a BinaryNet is
    a stack of one, a :class:`~bopsweep.models.StackedBinaryNet` has K), with one host sync."""
    model.eval()
    totals: Tensor | None = None
    for x, y in data.batches(batch_size):
        logits = per_member(model(x.contiguous(memory_format=LAYOUT)))
        batch = torch.stack(  # [K, 2]
            [
                torch.stack(
                    [F.cross_entropy(out, y, reduction="sum"), (out.argmax(1) == y).sum().float()]
                )
                for out in logits
            ]
        )
        totals = batch if totals is None else totals + batch
    assert totals is not None, "evaluate needs at least one batch"
    return [(loss / len(data), correct / len(data)) for loss, correct in totals.tolist()]


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The data order and augmentation of an epoch depend on (seed, epoch) alone."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def per_member(output: Tensor | list[Tensor]) -> list[Tensor]:
    """Each member's logits: a lone model's output is a stack of one."""
    return output if isinstance(output, list) else [output]


# What ends a member of a stack: its summary, or the exception that stopped it.
MemberEnd = dict[str, Any] | Exception


def optional_path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None
