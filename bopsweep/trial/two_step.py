"""Two-step training of the latent-weight baseline, as AdamBNN runs it.

The training strategy of Liu et al., How Do Adam and Training Strategies Help BNNs
Optimization?, ICML 2021, arXiv:2106.11309, whose public code (``step1/``, ``step2/``) runs it
as two separate runs. bopsweep runs both in one trial of ``T`` epochs with ``two_step = S``:

* **step 1**, epochs 1 … S: the kernels enter the forward pass as they are (real), the
  activations binary (sign with the straight-through estimator, as always); Adam with the
  trial's ``weight_decay`` (classic L2) on the latent kernels; latent weights **not clipped**.
* **step 2**, epochs S+1 … T: starts from the weights (kernels, norm parameters and running
  statistics) of step 1's **best** epoch by validation accuracy (the first, on a tie: AdamBNN's
  ``model_best``), not its last; kernels binarised (sign); weight decay 0; both Adams (latent
  kernels and norm layers) with fresh moments and step counts; latent weights not clipped
  either (AdamBNN's step 2 bounds them only through the straight-through gradient, zero where
  |w| > 1).
* **schedules restart**: each step is its own run, so a schedule runs over the step's epochs
  from its start value (:meth:`TwoStep.schedule_clock`): a linear lr decay goes from lr₀ to 0
  over step 1, and again from lr₀ over step 2, as AdamBNN's two ``LambdaLR``\\ s do.

The plain latent arm (no ``two_step``) is left as the Bop2ndOrder reference runs it: binary
kernels, clipped to [−1, 1].

Step 1's best weights ride in every checkpoint of step 1 (:meth:`TwoStep.state_dict`), so a run
resumed in step 1, exactly between the steps or in step 2 continues as the uninterrupted one:
step 2 is set up at the start of epoch S+1, after any checkpoint is loaded.

Step 1's real kernels are the model's ``quantize_kernels`` switched off
(:meth:`~bopsweep.models.BinaryNet.set_quantize_kernels`); a plain attribute, so the state dict
and the checkpoints do not change.
"""

from __future__ import annotations

from typing import Any

import torch

from bopsweep.models import BinaryNet
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.flips import InitialSigns


class TwoStep:
    """Sets up each epoch of a trial: which step it is in, and what that step changes.

    For a run without ``two_step`` every epoch is a plain one (binary kernels, clipped latent
    weights, the trial's weight decay throughout) and :meth:`begin_epoch` changes nothing.
    """

    def __init__(
        self,
        config: TrialConfig,
        model: BinaryNet,
        binary: torch.optim.Optimizer,
        real: torch.optim.Optimizer,
        initial: InitialSigns,
    ) -> None:
        self.split, self.weight_decay = config.two_step, config.weight_decay
        self.epochs = config.epochs
        self.model, self.binary, self.real, self.initial = model, binary, real, initial
        self.best_epoch: int | None = None  # step 1's best so far: its 1-based epoch,
        self.best_val_acc = -1.0  # its validation accuracy
        self.best_weights: dict[str, torch.Tensor] | None = None  # and the model's state

    def step_of(self, epoch: int) -> int:
        """1 or 2 for 0-based ``epoch`` of a two-step run; 2 (binary kernels) otherwise."""
        return 1 if self.split is not None and epoch < self.split else 2

    def binary_weights(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` trains binary kernels (what a best epoch must be)."""
        return self.step_of(epoch - 1) == 2

    def schedule_clock(self, step: int, steps_per_epoch: int) -> tuple[int, int]:
        """(step, epochs) a schedule sees at 0-based optimizer ``step``: the whole run's, or
        for a two-step run the step's own, counted from its first batch."""
        if self.split is None:
            return step, self.epochs
        first = self.split * steps_per_epoch  # step 2's first batch
        return (step, self.split) if step < first else (step - first, self.epochs - self.split)

    def begin_epoch(self, epoch: int) -> bool:
        """Prepare 0-based ``epoch``; True when the forward pass changed (a compiled model must
        be compiled again)."""
        if self.split is None:
            return False
        step1 = self.step_of(epoch) == 1
        self.binary.clip = None  # type: ignore[attr-defined]  # AdamBNN clips neither step
        if epoch == self.split:
            self._start_step2()
        for group in self.binary.param_groups:
            group["weight_decay"] = self.weight_decay if step1 else 0.0
        changed = self.model.quantize_kernels == step1  # step 1 wants real kernels
        self.model.set_quantize_kernels(not step1)
        return changed

    def _start_step2(self) -> None:
        """Step 1's best weights, fresh Adam state, C2I measured from here on."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        for optimizer in (self.binary, self.real):
            optimizer.state.clear()
        # C2I from the start of the run whose weights are binary: step 1's real kernels are
        # not binary weights, and a sign change there is no flip of the binary network
        self.initial.restart(self.model.binary_parameters())
        self.best_weights = None  # used: no longer carried in checkpoints

    def end_epoch(self, epoch: int, val_acc: float) -> None:
        """After 1-based ``epoch`` of step 1: keep the model if it is step 1's best so far."""
        if self.split is None or not epoch <= self.split or not val_acc > self.best_val_acc:
            return
        self.best_epoch, self.best_val_acc = epoch, val_acc
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Step 1's best, for the checkpoint (its weights only while step 2 has not begun)."""
        state: dict[str, Any] = {"best_epoch": self.best_epoch, "best_val_acc": self.best_val_acc}
        if self.best_weights is not None:
            state["weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_epoch, self.best_val_acc = state["best_epoch"], state["best_val_acc"]
        self.best_weights = state.get("weights")
