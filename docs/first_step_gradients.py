"""Step-1 kernel gradients of a Glorot-start Bop model: raw kernels (as the reference code
computes them, and bopsweep now) against sign(kernels) (what bopsweep computed before it
followed the reference).

    python docs/first_step_gradients.py WIDTH [BATCH]

prints, per layer, the ratio of the gradient norms and the fraction of weights whose gradient
has the same sign under both, for one forward and backward pass on random images.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from bopsweep.models import BinaryNet


def main(width: float, batch: int = 100) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    raw = BinaryNet(width, quantize_kernels=False)
    signed = BinaryNet(width, quantize_kernels=True)
    signed.load_state_dict(raw.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), generator=g).float() / 127.5 - 1
    y = torch.randint(0, 10, (batch,), generator=g)
    for model in (raw, signed):
        F.cross_entropy(model(x), y).backward()
    print(f"width {width:g}, batch {batch} (random images in [-1, 1])")
    print("layer   |g_raw|/|g_sign|  sign agreement")
    for name in raw.layers:
        a, b = raw.layers[name].weight.grad, signed.layers[name].weight.grad
        assert a is not None and b is not None
        agree = ((a > 0) == (b > 0)).float().mean().item()
        print(f"{name:6s} {a.norm().item() / b.norm().item():15.4g} {agree:15.3f}")


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
