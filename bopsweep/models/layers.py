"""Binary building blocks: sign with a straight-through estimator, binary conv and dense layers.

``sign`` maps 0 to +1 (larq's ``ste_sign``). Its gradient is the straight-through estimator
with the cut of Courbariaux et al. (2016, arXiv:1602.02830): ``∂sign(x)/∂x := 1{|x| ≤ 1}``.

Inputs (except the first layer's real-valued image) always pass through ``sign_ste``. Kernels
do only with ``quantize_kernel=True``: the latent-weight baseline needs it (its kernels are
real latent weights). Under Bop and Bop2ndOrder the kernel enters the forward pass as it is, as
in the authors' reference code, where Bop-trained kernels carry larq's ``NoOp(precision=1)``
quantizer (Helwegen et al., NeurIPS 2019, arXiv:1906.02107; Suarez-Ramirez et al., CVPRW
2021, arXiv:2104.05124). The two agree once the kernel is ±1 (sign(w) = w, and the
straight-through gradient passes unchanged where |w| ≤ 1); they differ only on a real-valued
kernel, i.e. on the first batch from a Glorot start, before Bop's first step binarises it.
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
    """3×3 conv without bias whose input (unless ``real_input``) is binarised with sign + STE.

    The kernel is the parameter the binary optimizer trains. ``quantize_kernel=True`` (the
    latent-weight baseline: real latent values) convolves with ``sign_ste(kernel)``;
    ``False`` (Bop, Bop2ndOrder) with the kernel as it is: ±1 after the optimizer's first step,
    the real Glorot values before it, as in the reference code (see the module docstring).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        padding: str,
        real_input: bool = False,
        quantize_kernel: bool = True,
    ) -> None:
        super().__init__(cin, cout, kernel_size=3, padding=padding, bias=False)
        self.real_input = real_input
        self.quantize_kernel = quantize_kernel

    def forward(self, x: Tensor) -> Tensor:
        if not self.real_input:
            x = sign_ste(x)
        kernel = sign_ste(self.weight) if self.quantize_kernel else self.weight
        return self._conv_forward(x, kernel, None)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, real_input={self.real_input}, "
            f"quantize_kernel={self.quantize_kernel}"
        )


class BinaryLinear(nn.Linear):
    """Dense layer without bias and with binary input (sign + STE); the kernel is binarised
    the same way only with ``quantize_kernel=True`` (as :class:`BinaryConv2d`)."""

    def __init__(self, fin: int, fout: int, quantize_kernel: bool = True) -> None:
        super().__init__(fin, fout, bias=False)
        self.quantize_kernel = quantize_kernel

    def forward(self, x: Tensor) -> Tensor:
        kernel = sign_ste(self.weight) if self.quantize_kernel else self.weight
        return F.linear(sign_ste(x), kernel)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quantize_kernel={self.quantize_kernel}"


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
