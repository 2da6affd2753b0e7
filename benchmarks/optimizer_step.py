"""One optimizer step over BinaryNet's binary kernels: Bop, Bop2ndOrder (biased, unbiased)
against ``torch.optim.Adam(foreach=True)`` and a plain copy of the same bytes."""

from __future__ import annotations

import torch

from benchmarks.harness import measure, report
from bopsweep.models import BinaryNet
from bopsweep.optim import Bop, Bop2ndOrder


def kernels(width: float, device: torch.device) -> list[torch.nn.Parameter]:
    shapes = [p.shape for p in BinaryNet(width=width).binary_parameters()]
    gen = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0))
        p = torch.nn.Parameter(p.detach().to(device))
        p.grad = torch.randn(shape, generator=gen).to(device) * 1e-3
        params.append(p)
    return params


def run(width: float = 1.0, device: str = "cpu", rounds: int = 7, fused: bool = True) -> dict:
    dev = torch.device(device)
    optimizers = {
        "Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "Bop": lambda ps: Bop(ps),
        "Bop2ndOrder biased": lambda ps: Bop2ndOrder(ps),
        "Bop2ndOrder unbiased": lambda ps: Bop2ndOrder(ps, unbiased=True),
        "Bop2ndOrder biased, fused": lambda ps: Bop2ndOrder(ps, fused=True),
        "Bop2ndOrder unbiased, fused": lambda ps: Bop2ndOrder(ps, unbiased=True, fused=True),
    }
    if not fused:
        optimizers = {k: v for k, v in optimizers.items() if "fused" not in k}
    candidates = {}
    for name, make in optimizers.items():
        opt = make(kernels(width, dev))
        opt.step()  # the first step binarises and may compile: not timed
        candidates[name] = opt.step
    # the memory-bound limit: copying every byte a Bop2ndOrder step touches (w, g, m, v)
    src = kernels(width, dev) * 4
    dst = [torch.empty_like(p) for p in src]
    candidates["copy of the same bytes"] = lambda: torch._foreach_copy_(dst, src)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    results = measure(candidates, "Adam(foreach=True)", rounds=rounds, sync=sync)
    copy = results["copy of the same bytes"]["seconds"]
    for r in results.values():
        r["ratio_to_copy"] = r["seconds"] / copy
    n = sum(p.numel() for p in src) // 4
    report(f"optimizer step, {n:,} binary weights, {device}", results, "Adam(foreach=True)")
    for name, r in results.items():
        print(f"  {name:<28} / copy: {r['ratio_to_copy']:.2f}")
    return results


if __name__ == "__main__":
    run()
