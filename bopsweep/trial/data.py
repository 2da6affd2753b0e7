"""CIFAR-10 as tensors on the training device, with its training augmentation.

The files are read and checked by :mod:`bopsweep.trial.cifar_files`; this module holds a
split on the device and serves its batches. Training augmentation, as in the CIFAR-10 runs of
Bop (Helwegen et al., NeurIPS 2019, arXiv:1906.02107) and Bop2ndOrder (Suarez-Ramirez et al.,
CVPRW 2021, arXiv:2104.05124), runs on the device on whole batches:
zero-pad 4 px, random 32×32 crop, random horizontal flip, then pixels scaled to [−1, 1].
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bopsweep.trial.cifar_files import Split


class DeviceData:
    """One split as uint8 images and int64 labels on the training device."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.labels = torch.from_numpy(split.labels).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, augment: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of (images in [−1, 1], labels); shuffled and augmented when a generator is given.

        The last batch may be smaller (as Keras ``fit`` does).
        """
        n = len(self)
        order = (
            torch.randperm(n, generator=generator, device=self.device)
            if generator is not None
            else torch.arange(n, device=self.device)
        )
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = self.images[idx]
            if augment:
                assert generator is not None, "augmentation draws from the generator"
                x = augment_batch(x, generator)
            yield to_unit_range(x), self.labels[idx]


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 pixels → float in [−1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def augment_batch(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """Zero-pad ``pad`` px, random crop back to the input size, random horizontal flip.

    One gather for the whole batch; uint8 in, uint8 out.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand((b, 1), generator=generator, device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = dx + torch.where(flip, cols.flip(1), cols)  # flipping = reading columns backwards
    return padded[
        torch.arange(b, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
