"""π_t, the flip metric::

    π_t = ln( #flipped at step t / #binary weights + e^-9 )

−9 means no weight flipped; ≈ 0 means all did. :class:`FlipLog` keeps π network-wide and per
layer (binary kernels only) on the device and aggregates it over windows of ``log_every`` steps
(mean of the per-step π, and the total flip fraction), so logging costs no host sync per step.
Windows never cross an epoch boundary.

Sources: Helwegen et al., Latent Weights Do Not Exist, NeurIPS 2019, arXiv:1906.02107 (Eq. 7);
Suarez-Ramirez et al., A Bop and Beyond, CVPRW 2021, arXiv:2104.05124 (Eq. 11). See
``docs/reference.md``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

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
            "pi",
            "flip_frac",
            *(f"pi_{n}" for n in self.names),
            *(f"flip_frac_{n}" for n in self.names),
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
        row = {"pi": pi[-1], "flip_frac": frac[-1]}
        row.update({f"pi_{name}": v for name, v in zip(self.names, pi)})
        row.update({f"flip_frac_{name}": v for name, v in zip(self.names, frac)})
        return row

    def end_epoch(self, step: int) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Close the epoch: its aggregate row and its logged-step rows (one host transfer)."""
        self._close_window(step)
        stacked = torch.stack(
            [r[2] for r in self._rows] + [torch.cat([self._epoch_pi_sum, self._epoch_flips])]
        ).tolist()
        steps = [
            {"step": s, "steps": k, **self._row(d, k)} for (s, k, _), d in zip(self._rows, stacked)
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
