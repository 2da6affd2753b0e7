"""Two-step training of the latent-weight baseline.

The training strategy of Liu et al., How Do Adam and Training Strategies Help BNNs
Optimization?, ICML 2021, arXiv:2106.11309, inside one run of ``T`` epochs with
``two_step = S``:

* **step 1**, epochs 1 … S: the kernels enter the forward pass as they are (real), the
  activations binary (sign with the straight-through estimator, as always); Adam with the
  trial's ``weight_decay`` (classic L2) on the latent kernels;
* **step 2**, epochs S+1 … T: kernels binarised again (sign), starting from step 1's weights;
  weight decay 0; both Adams (latent kernels and norm layers) start with fresh moments and step
  counts, as the paper's step 2 is a new run with a new optimizer from step 1's weights.

Schedules keep counting over the whole run (an ``lr`` decay to 0 spans both steps; the paper
restarts its decay for step 2). The step is a function of the epoch alone, so a run resumed
from a checkpoint in either step (or exactly between them) continues as the uninterrupted one:
the moments are reset at the start of epoch S+1, after loading the checkpoint written at the end
of epoch S.

The model's binary layers always binarise their kernels; :func:`real_kernels` makes them take
the kernels as they are by giving each layer an instance ``forward`` (no change to
:mod:`bopsweep.models`, no change to the state dict or the checkpoints).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bopsweep.models import BinaryNet, sign_ste
from bopsweep.studies.config import TrialConfig


def real_kernels(model: BinaryNet, real: bool) -> None:
    """Make ``model``'s binary layers use their kernels as they are (``real``) or through sign
    (the layers' own forward). Inputs stay binary, except conv1's real image."""
    for layer in model.layers.values():
        layer.__dict__.pop("forward", None)
        if real:  # an instance attribute: nn.Module.__call__ finds it before the class's
            layer.__dict__["forward"] = _RealKernelForward(layer)


def uses_real_kernels(model: BinaryNet) -> bool:
    return all("forward" in layer.__dict__ for layer in model.layers.values())


class _RealKernelForward:
    """A binary layer's forward pass without the sign of its kernel."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, x: Tensor) -> Tensor:
        layer, kernel = self.layer, cast(Tensor, self.layer.weight)
        if isinstance(layer, nn.Conv2d):
            if not getattr(layer, "real_input", False):
                x = sign_ste(x)
            return layer._conv_forward(x, kernel, None)
        return F.linear(sign_ste(x), kernel)


class TwoStep:
    """Sets up each epoch of a trial: which step it is in, and what that step changes.

    For a run without ``two_step`` every epoch is a plain one (binary kernels, the trial's
    weight decay throughout) and :meth:`begin_epoch` changes nothing.
    """

    def __init__(
        self,
        config: TrialConfig,
        model: BinaryNet,
        binary: torch.optim.Optimizer,
        real: torch.optim.Optimizer,
    ) -> None:
        self.split, self.weight_decay = config.two_step, config.weight_decay
        self.model, self.binary, self.real = model, binary, real

    def step_of(self, epoch: int) -> int:
        """1 or 2 for 0-based ``epoch`` of a two-step run; 2 (binary kernels) otherwise."""
        return 1 if self.split is not None and epoch < self.split else 2

    def begin_epoch(self, epoch: int) -> bool:
        """Prepare 0-based ``epoch``; True when the forward pass changed (a compiled model must
        be compiled again)."""
        if self.split is None:
            return False
        step1 = self.step_of(epoch) == 1
        if epoch == self.split:  # the first epoch of step 2: fresh Adam moments
            for optimizer in (self.binary, self.real):
                optimizer.state.clear()
        for group in self.binary.param_groups:
            group["weight_decay"] = self.weight_decay if step1 else 0.0
        changed = uses_real_kernels(self.model) != step1
        real_kernels(self.model, step1)
        return changed
