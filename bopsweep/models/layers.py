"""Binary building blocks: sign with a straight-through estimator, binary conv and dense layers.

``sign`` maps 0 to +1 (larq's ``ste_sign``). Its gradient is the straight-through estimator
with the cut of Courbariaux et al. (2016, arXiv:1602.02830): ``∂sign(x)/∂x := 1{|x| ≤ 1}``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def binarize(x: Tensor) -> Tensor:
    """sign(x) with sign(0) = +1, no gradient."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return binarize(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: Tensor) -> Tensor:
    """sign(x) (0 → +1) forward; straight-through gradient, zero where |x| > 1."""
    return _SignSTE.apply(x)


class BinaryConv2d(nn.Conv2d):
    """Conv without bias whose kernel (and, unless ``real_input``, input) is binarised.

    The kernel is the parameter the binary optimizer trains: ±1 under Bop, latent real values
    under the latent-weight baseline. Either way the forward pass sees ``sign(kernel)``.
    """

    def __init__(self, cin: int, cout: int, padding: str, real_input: bool = False) -> None:
        super().__init__(cin, cout, kernel_size=3, padding=padding, bias=False)
        self.real_input = real_input

    def forward(self, x: Tensor) -> Tensor:
        if not self.real_input:
            x = sign_ste(x)
        return self._conv_forward(x, sign_ste(self.weight), None)


class BinaryLinear(nn.Linear):
    """Dense layer without bias, binary input and binary kernel."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__(fin, fout, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(sign_ste(x), sign_ste(self.weight))


class ShiftBatchNorm(nn.Module):
    """Batch norm with a learned shift but no scale (Keras ``scale=False``).

    A scale is pointless before sign. Keras momentum 0.99 is PyTorch momentum 0.01.
    Works on (N, C) and (N, C, H, W).
    """

    running_mean: Tensor  # buffers, registered in __init__
    running_var: Tensor

    def __init__(self, features: int, momentum: float = 0.01, eps: float = 1e-3) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            None,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels at each position (Keras ``LayerNormalization(axis=-1)``)."""

    def __init__(self, features: int, eps: float = 1e-3) -> None:
        super().__init__(features, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return super().forward(x)
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
