"""Weight metrics of the binary kernels: π_t, the FF ratio and the C2I ratio::

    FF_t  = #flipped at step t / #binary weights              (flip_frac)
    π_t   = ln( FF_t + e^-9 )                                  (pi)
    C2I_t = 1 − Σ_l Σ_w |sign(w_t) − sign(w_0)| / 2 / N
          = #{sign(w_t) = sign(w_0)} / #binary weights          (c2i)

A flip is a change of sign (sign(0) = +1, as :func:`bopsweep.models.binarize`): a Bop flip, or
a latent weight crossing zero. π = −9 means no weight flipped; ≈ 0 means all did. C2I, the
*correlation to initialization*, is the share of binary weights whose sign is still the one they
started with: 1 means no weight changed sign since the start, 0 that every one did (|sign(w_t) −
sign(w_0)| / 2 is 1 for a changed sign, 0 otherwise; Liu et al. report that a larger weight decay
raises FF and *lowers* C2I). bopsweep 0.1 stored the complement under the same name;
:mod:`bopsweep.store.c2i_upgrade` converts such studies.
:class:`FlipLog` keeps π and FF network-wide and per layer (binary kernels only) on the device
and aggregates them over windows of ``log_every`` steps (mean of the per-step π, and the total
flip fraction, i.e. the mean FF ratio), so logging costs no host sync per step. Windows never
cross an epoch boundary. :class:`InitialSigns` keeps sign(w_0) (bit-packed in checkpoints) and
measures C2I at the end of each epoch.

Sources: Helwegen et al., Latent Weights Do Not Exist, NeurIPS 2019, arXiv:1906.02107 (Eq. 7);
Suarez-Ramirez et al., A Bop and Beyond, CVPRW 2021, arXiv:2104.05124 (Eq. 11); FF and C2I
ratios: Liu et al., How Do Adam and Training Strategies Help BNNs Optimization?, ICML 2021,
arXiv:2106.11309. See ``docs/reference.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from bopsweep.metric_keys import C2I, FLIP_FRAC, PI, STEP, STEPS, layer_column

PI_FLOOR = math.exp(-9)


class FlipLog:
    """Accumulates flip counts per layer, per step, on the device.

    Column names: ``pi`` and ``flip_frac`` network-wide, ``pi_<layer>`` and
    ``flip_frac_<layer>`` per layer.
    """

    def __init__(self, names: list[str], numels: list[int], log_every: int, device: torch.device):
        self.names = names
        self.log_every = log_every
        self.numel = torch.tensor(numels, dtype=torch.float32, device=device)
        self.total = float(sum(numels))
        sizes = torch.tensor([*numels, sum(numels)], dtype=torch.float32, device=device)
        self._inverse = 1.0 / sizes
        self._floor = torch.full_like(sizes, PI_FLOOR)
        n = len(names) + 1  # layers, then the network
        self._pi_sum = torch.zeros(n, device=device)
        self._flips = torch.zeros(n, device=device)
        self._steps = 0
        self._epoch_pi_sum = torch.zeros(n, device=device)
        self._epoch_flips = torch.zeros(n, device=device)
        self._epoch_steps = 0
        self._rows: list[tuple[int, int, Tensor]] = []  # (step at window end, window size, data)

    @property
    def columns(self) -> list[str]:
        return [
            PI,
            FLIP_FRAC,
            *(layer_column(PI, n) for n in self.names),
            *(layer_column(FLIP_FRAC, n) for n in self.names),
        ]

    def record(self, step: int, counts: Tensor) -> None:
        """Add one optimizer step's per-layer flip counts; ``step`` counts steps done (1-based)."""
        counts = counts.to(self._flips.dtype)
        flips = torch.cat([counts, counts.sum().unsqueeze(0)])  # layers, then the network
        self._flips += flips
        self._pi_sum += torch.addcmul(self._floor, flips, self._inverse).log_()
        self._steps += 1
        if self._steps == self.log_every:
            self._close_window(step)

    def _close_window(self, step: int) -> None:
        if self._steps:
            self._rows.append((step, self._steps, torch.cat([self._pi_sum, self._flips])))
            self._epoch_pi_sum += self._pi_sum
            self._epoch_flips += self._flips
            self._epoch_steps += self._steps
            self._pi_sum = torch.zeros_like(self._pi_sum)
            self._flips = torch.zeros_like(self._flips)
            self._steps = 0

    def _row(self, data: list[float], steps: int) -> dict[str, float]:
        n = len(self.names) + 1
        pi_sum, flips = data[:n], data[n:]
        weights = [*self.numel.tolist(), self.total]
        pi = [s / steps for s in pi_sum]
        frac = [f / (steps * w) for f, w in zip(flips, weights)]
        row = {PI: pi[-1], FLIP_FRAC: frac[-1]}
        row.update({layer_column(PI, name): v for name, v in zip(self.names, pi)})
        row.update({layer_column(FLIP_FRAC, name): v for name, v in zip(self.names, frac)})
        return row

    def end_epoch(self, step: int) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Close the epoch: its aggregate row and its logged-step rows (one host transfer)."""
        self._close_window(step)
        stacked = torch.stack(
            [r[2] for r in self._rows] + [torch.cat([self._epoch_pi_sum, self._epoch_flips])]
        ).tolist()
        steps = [
            {STEP: s, STEPS: k, **self._row(d, k)} for (s, k, _), d in zip(self._rows, stacked)
        ]
        epoch = self._row(stacked[-1], max(self._epoch_steps, 1))
        self._rows = []
        self._epoch_pi_sum.zero_()
        self._epoch_flips.zero_()
        self._epoch_steps = 0
        return epoch, steps

    def latest_pi(self) -> Tensor | None:
        """Mean π of the last closed window, as a device tensor (for progress displays)."""
        if not self._rows:
            return None
        _, k, data = self._rows[-1]
        return data[len(self.names)] / k


class InitialSigns:
    """sign(w_0) of each kernel, and the C2I ratio of the kernels against it (the share of
    weights whose sign is still sign(w_0)).

    Column names: ``c2i`` network-wide and ``c2i_<layer>`` per layer. The signs live on the
    kernels' device as booleans (w_0 >= 0) and go to checkpoints bit-packed (:meth:`state_dict`),
    so a resumed run measures against the same start.
    """

    def __init__(self, names: list[str], kernels: Iterable[Tensor]) -> None:
        self.names = names
        self.signs = [k.detach().ge(0).flatten() for k in kernels]

    @property
    def columns(self) -> list[str]:
        return [C2I, *(layer_column(C2I, n) for n in self.names)]

    @torch.no_grad()
    def c2i(self, kernels: Iterable[Tensor]) -> dict[str, float]:
        """The C2I ratio, network-wide and per layer, of the kernels as they are (one host
        transfer)."""
        kept = torch.stack(
            [k.ge(0).flatten().eq(s).sum() for k, s in zip(kernels, self.signs)]
        ).tolist()
        numels = [s.numel() for s in self.signs]
        row = {C2I: sum(kept) / sum(numels)}
        row.update({layer_column(C2I, n): c / m for n, c, m in zip(self.names, kept, numels)})
        return row

    def restart(self, kernels: Iterable[Tensor]) -> None:
        """Measure from the kernels as they are now (the start of a two-step run's step 2)."""
        self.signs = [k.detach().ge(0).flatten() for k in kernels]

    def state_dict(self) -> dict[str, Any]:
        return {
            "numels": [s.numel() for s in self.signs],
            "packed": [pack_bits(s).cpu() for s in self.signs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        numels, packed = state["numels"], state["packed"]
        if list(numels) != [s.numel() for s in self.signs]:
            raise ValueError(f"initial signs of {list(numels)} weights per kernel")
        self.signs = [unpack_bits(p.to(s.device), n) for p, n, s in zip(packed, numels, self.signs)]


_BITS = (1, 2, 4, 8, 16, 32, 64, 128)


def pack_bits(mask: Tensor) -> Tensor:
    """A flat boolean tensor as uint8, eight values a byte (the first in the lowest bit)."""
    flat = mask.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    weights = torch.tensor(_BITS, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, numel: int) -> Tensor:
    """The inverse of :func:`pack_bits`: the first ``numel`` booleans."""
    weights = torch.tensor(_BITS, dtype=torch.uint8, device=packed.device)
    return (packed.unsqueeze(1) & weights).ne(0).flatten()[:numel]
