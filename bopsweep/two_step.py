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

Step 1's real kernels are the model's ``quantize_kernels`` switched off
(:meth:`~bopsweep.models.BinaryNet.set_quantize_kernels`); a plain attribute, so the state dict
and the checkpoints do not change.
"""

from __future__ import annotations

import torch

from bopsweep.models import BinaryNet
from bopsweep.studies.config import TrialConfig


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
        changed = self.model.quantize_kernels == step1  # step 1 wants real kernels
        self.model.set_quantize_kernels(not step1)
        return changed
