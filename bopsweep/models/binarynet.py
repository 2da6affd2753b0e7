"""BinaryNet for CIFAR-10, as in the Bop and Bop2ndOrder reference code.

BinaryNet: Courbariaux et al. 2016, arXiv:1602.02830. Bop: Helwegen et al., NeurIPS 2019,
arXiv:1906.02107. Bop2ndOrder: Suarez-Ramirez et al., A Bop and Beyond, CVPRW 2021,
arXiv:2104.05124. Layout and choices in detail: ``docs/reference.md``.

Nine binary layers; each is conv/dense without bias → (max-pool 2) → norm. Only the first
sees real input (and uses valid padding); every other layer binarises its input with sign and
a straight-through estimator. Kernels are binarised the same way only for the latent-weight
baseline (``quantize_kernels=True``); under Bop they enter the forward pass as they are, as in
the reference code. The last norm's output is the logits. At width 1 the kernels hold
10,352,000 binary weights:

    conv1 3×3×3→128 valid      3,456     conv4 256→256, pool     589,824   fc1 4608→1024  4,718,592
    conv2 128→128, pool      147,456     conv5 256→512         1,179,648   fc2 1024→1024  1,048,576
    conv3 128→256            294,912     conv6 512→512, pool   2,359,296   fc3 1024→10       10,240

``width`` scales 128/256/512/1024 (rounded, at least 1) for quick studies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from torch import Tensor, nn

from bopsweep.models.layers import (
    BinaryConv2d,
    BinaryLinear,
    ChannelLayerNorm,
    ShiftBatchNorm,
    binarize,
)

NORMS = ("batch", "layer")  # normalisation after each layer
INITS = ("glorot", "sign")  # kernel start: Glorot uniform (reference code) or ±1 (paper)

# (name, output channels at width 1, max-pool after)
_CONVS = (
    ("conv1", 128, False),
    ("conv2", 128, True),
    ("conv3", 256, False),
    ("conv4", 256, True),
    ("conv5", 512, False),
    ("conv6", 512, True),
)
_HIDDEN = 1024


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _kernel(layer: nn.Module) -> nn.Parameter:
    """A binary layer's kernel (``BinaryNet.layers`` holds BinaryConv2d and BinaryLinear)."""
    return cast(nn.Parameter, layer.weight)


class BinaryNet(nn.Module):
    """BinaryNet for 32×32×3 images.

    Args:
        width: multiplier of every hidden width (1.0 is the paper's network).
        norm: ``"batch"`` (shift-only batch norm, the papers' default) or ``"layer"``.
        init: ``"glorot"`` (real Glorot-uniform kernels binarised by Bop's first step, as in the
            reference code) or ``"sign"`` (kernels start at ±1, as the papers write). With
            ``quantize_kernels=False`` (Bop, Bop2ndOrder) the first forward and backward pass
            of a Glorot start run on the real Glorot kernels, as the reference's does; from a
            sign start, or after Bop's first step, the kernels are ±1 either way. With
            ``quantize_kernels=True`` every forward pass sees sign(kernel), so the two inits
            differ only in the first flip decision.
        num_classes: number of outputs.
        quantize_kernels: binarise the kernels in the forward pass with sign and the
            straight-through estimator. ``True`` for the latent-weight baseline, whose kernels
            are real latent weights (Courbariaux et al. 2016). ``False`` for Bop and
            Bop2ndOrder: the kernels enter the forward pass as they are, as in the authors'
            reference code, whose Bop-trained kernels carry larq's ``NoOp(precision=1)``
            quantizer. Both compute the same once the kernels are ±1 (sign(w) = w, and the STE
            passes the gradient unchanged where |w| ≤ 1): they differ only while a kernel is
            real-valued, i.e. on the first batch from a Glorot start. Input activations are
            binarised with sign + STE either way. The default, ``True``, keeps the forward
            pass binary whatever trains the kernels.
    """

    def __init__(
        self,
        width: float = 1.0,
        norm: str = "batch",
        init: str = "glorot",
        num_classes: int = 10,
        *,
        quantize_kernels: bool = True,
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.quantize_kernels = quantize_kernels
        make_norm = ShiftBatchNorm if norm == "batch" else ChannelLayerNorm
        self.pool = nn.MaxPool2d(2)
        self.pooled = {name for name, _, pool in _CONVS if pool}
        self.layers = nn.ModuleDict()
        self.norms = nn.ModuleDict()
        cin = 3
        for i, (name, channels, _) in enumerate(_CONVS):
            cout = _scaled(channels, width)
            self.layers[name] = BinaryConv2d(
                cin,
                cout,
                padding="valid" if i == 0 else "same",
                real_input=i == 0,
                quantize_kernel=quantize_kernels,
            )
            self.norms[name] = make_norm(cout)
            cin = cout
        hidden = _scaled(_HIDDEN, width)
        fin = cin * 3 * 3
        for name, fout in (("fc1", hidden), ("fc2", hidden), ("fc3", num_classes)):
            self.layers[name] = BinaryLinear(fin, fout, quantize_kernel=quantize_kernels)
            self.norms[name] = make_norm(fout)
            fin = fout
        self.reset_kernels(init)

    def set_quantize_kernels(self, quantize: bool) -> None:
        """Binarise the kernels in the forward pass (sign + STE) or take them as they are. May
        change between epochs: two-step training runs its first step on real kernels."""
        self.quantize_kernels = quantize
        for layer in self.layers.values():
            cast(BinaryConv2d | BinaryLinear, layer).quantize_kernel = quantize

    @torch.no_grad()
    def reset_kernels(self, init: str) -> None:
        for layer in self.layers.values():
            kernel = _kernel(layer)
            nn.init.xavier_uniform_(kernel)
            if init == "sign":
                kernel.copy_(binarize(kernel))

    def forward(self, x: Tensor) -> Tensor:
        for name, layer in self.layers.items():
            if name == "fc1":
                x = x.flatten(1)
            x = layer(x)
            if name in self.pooled:
                x = self.pool(x)
            x = self.norms[name](x)
        return x

    def binary_parameters(self) -> Iterator[nn.Parameter]:
        """The nine kernels, trained by the binary optimizer."""
        return (_kernel(layer) for layer in self.layers.values())

    def real_parameters(self) -> Iterator[nn.Parameter]:
        """The norm layers' parameters, trained by Adam."""
        return self.norms.parameters()

    @property
    def binary_layer_names(self) -> list[str]:
        return list(self.layers)
