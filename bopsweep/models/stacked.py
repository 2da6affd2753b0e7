"""K BinaryNets of one architecture run as one network: stacked trials.

A single BinaryNet CIFAR-10 trial (batch 50–100, 32×32 images, narrow layers) leaves most of a
device idle. :class:`StackedBinaryNet` runs K member networks, which share their input batch,
as one wider network: each layer concatenates the members' kernels and runs once,

* ``conv1`` (real input, shared by every member): one convolution with the K kernels
  concatenated along the output channels, ``[K·C, 3, 3, 3]``;
* ``conv2…conv6``: a grouped convolution, ``groups=K``: group k sees only member k's channels;
* ``fc1…fc3``: a batched matrix product over ``[K, out, in]`` kernels;
* batch norm per channel over the ``K·C`` channels; layer norm over each member's own channels.

Every operation is channel-separable by member, so member k's logits, and hence its loss and
gradients, are those of the member run alone (up to floating-point summation order). The members
stay ordinary :class:`~bopsweep.models.BinaryNet` modules with their own parameters, buffers,
optimizers and checkpoints: the stack only reads their kernels on each forward pass (a
concatenation per layer, cheap beside the convolution) and writes the batch-norm running
statistics back. ``sum_k loss_k`` backpropagates to each member exactly its own gradient, as
member k's parameters reach only its own logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bopsweep.models.binarynet import BinaryNet
from bopsweep.models.layers import (
    BinaryConv2d,
    BinaryLinear,
    ChannelLayerNorm,
    ShiftBatchNorm,
    sign_ste,
)


def _shape(model: BinaryNet) -> tuple[object, ...]:
    """What members of one stack must share: every layer's shape and kind of norm."""
    return tuple(
        (tuple(cast(Tensor, layer.weight).shape), type(model.norms[name]).__name__)
        for name, layer in model.layers.items()
    )


class StackedBinaryNet(nn.Module):
    """K BinaryNets of equal shape as one network; ``forward(x)`` gives each member's logits.

    The members may differ in everything but shape: kernels, ``quantize_kernels`` (read at each
    forward pass, so two-step training works member by member), norm parameters.

    ``grouped=True`` runs each layer once for all members (concatenated and grouped kernels, as
    above): fewer, larger kernels, which is what a GPU wants. ``grouped=False`` runs the members
    one after the other on the shared batch: on the CPU, PyTorch's grouped convolutions and
    their batch-norm backward are slower than the members' own layers (a stack of 4 trained
    0.86× and 0.69× as many trials per hour as separate runs at widths 1/8 and 1/4, member by
    member 1.06× and 1.01×; ``python -m benchmarks --only stack``), so a CPU stack shares only
    what precedes and follows the forward pass (process, data, batches, evaluation).
    """

    def __init__(self, members: Sequence[BinaryNet], *, grouped: bool = True) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        keys = {_shape(m) for m in members}
        if len(keys) > 1:
            raise ValueError("stacked members must share their architecture (width and norm)")
        self.members = nn.ModuleList(members)
        self.grouped = grouped

    @property
    def first(self) -> BinaryNet:
        """The member whose layers stand for all (shapes, padding, pooling)."""
        return cast(BinaryNet, self.members[0])

    def forward(self, x: Tensor) -> list[Tensor]:
        members = cast(Sequence[BinaryNet], self.members)
        if not self.grouped:
            # each member's own logits, contiguous: its backward is then its separate run's
            return [m(x) for m in members]
        k = len(members)
        n = x.shape[0]
        for name, layer in self.first.layers.items():
            kernels = [
                _quantized(cast(BinaryConv2d | BinaryLinear, m.layers[name])) for m in members
            ]
            if isinstance(layer, BinaryConv2d):
                if not layer.real_input:
                    x = sign_ste(x)
                x = F.conv2d(
                    x,
                    torch.cat(kernels),
                    padding=layer.padding,
                    groups=1 if layer.real_input else k,
                )
                if name in self.first.pooled:
                    x = self.first.pool(x)
            else:
                if x.dim() == 4:  # flatten each member's [C, H, W] as BinaryNet does
                    x = x.reshape(n, k, -1)
                x = torch.bmm(sign_ste(x).transpose(0, 1), torch.stack(kernels).transpose(1, 2))
                x = x.transpose(0, 1)  # [N, K, out]
            x = self._norm(name, x, k)
        return list(x.unbind(1))  # [N, K, classes] → K × [N, classes]

    def _norm(self, name: str, x: Tensor, k: int) -> Tensor:
        norms = [m.norms[name] for m in cast(Sequence[BinaryNet], self.members)]
        first = norms[0]
        n = x.shape[0]
        if isinstance(first, ShiftBatchNorm):
            batch_norms = cast(list[ShiftBatchNorm], norms)
            means = torch.cat([b.running_mean for b in batch_norms])
            variances = torch.cat([b.running_var for b in batch_norms])
            out = F.batch_norm(
                x.reshape(n, -1) if x.dim() == 3 else x,
                means,
                variances,
                None,
                torch.cat([b.bias for b in batch_norms]),
                self.training,
                first.momentum,
                first.eps,
            )
            if self.training:  # batch_norm updated the concatenated statistics in place
                c = first.bias.numel()
                for b, mean, var in zip(batch_norms, means.split(c), variances.split(c)):
                    b.running_mean.copy_(mean)
                    b.running_var.copy_(var)
            return out.reshape(n, k, -1) if x.dim() == 3 else out
        layer_norms = cast(list[ChannelLayerNorm], norms)
        eps = layer_norms[0].eps
        weight = torch.stack([ln.weight for ln in layer_norms])  # [K, C]
        bias = torch.stack([ln.bias for ln in layer_norms])
        c = weight.shape[1]
        if x.dim() == 3:  # [N, K, C]
            return F.layer_norm(x, (c,), eps=eps) * weight + bias
        h, w = x.shape[2:]
        y = x.reshape(n, k, c, h, w).permute(0, 1, 3, 4, 2)  # channels last, per member
        y = F.layer_norm(y, (c,), eps=eps) * weight[:, None, None] + bias[:, None, None]
        return y.permute(0, 1, 4, 2, 3).reshape(n, k * c, h, w)


def _quantized(layer: BinaryConv2d | BinaryLinear) -> Tensor:
    return sign_ste(layer.weight) if layer.quantize_kernel else layer.weight
