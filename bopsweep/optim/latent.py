"""The latent-weight baseline: real latent kernels trained by Adam and clipped to [−1, 1].

The forward pass binarises the latent kernels with sign and a straight-through estimator (the
model's binary layers do that for every optimizer); this optimizer is Adam (Kingma & Ba, ICLR
2015, arXiv:1412.6980) followed by the clip, as in BinaryNet (Courbariaux et al. 2016,
arXiv:1602.02830) and the "Latent weights" row of Table 2 of Suarez-Ramirez et al., A Bop and
Beyond, CVPRW 2021, arXiv:2104.05124. A "flip" here is a change of sign of a latent weight,
counted like Bop's flips so π_t compares across optimizers. See ``docs/reference.md``.

``weight_decay`` is classic L2 regularisation, added to the gradient before Adam's moments
(torch's ``Adam(weight_decay=...)``, not AdamW's decoupled decay), as in the recipe of Liu et
al., How Do Adam and Training Strategies Help BNNs Optimization?, ICML 2021, arXiv:2106.11309.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class LatentAdam(torch.optim.Adam):
    """Adam on latent weights (with optional classic L2 ``weight_decay``), clipped to
    ``[-clip, clip]`` after each step (``clip=None``: not clipped, as in AdamBNN's two-step
    training).

    Exposes :attr:`flip_counts` and :attr:`flips_total` like :class:`bopsweep.optim.Bop`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        clip: float | None = 1.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True
        )
        self.clip = clip
        self.flip_counts: Tensor | None = None
        self.flips_total: Tensor | None = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        params = [p for g in self.param_groups for p in g["params"]]
        before = [p.ge(0) for p in params]
        loss = super().step(closure)
        if self.clip is not None:
            torch._foreach_clamp_min_(params, -self.clip)
            torch._foreach_clamp_max_(params, self.clip)
        self.flip_counts = torch.stack([p.ge(0).ne_(b).sum() for p, b in zip(params, before)])
        self.flips_total = self.flip_counts.sum()
        return loss
