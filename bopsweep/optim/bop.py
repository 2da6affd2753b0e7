"""Bop and Bop2ndOrder: optimizers that flip binary weights instead of updating latent ones.

Bop (Helwegen et al., Latent Weights Do Not Exist, NeurIPS 2019, arXiv:1906.02107, Alg. 2)::

    m ← m + γ (g − m)                       m starts at 0
    flip w  iff  w · m > τ

Bop2ndOrder (Suarez-Ramirez et al., A Bop and Beyond, CVPRW 2021, arXiv:2104.05124, Alg. 3)::

    m ← m + γ (g − m)         v ← v + σ (g² − v)          m = v = 0 at start
    biased:    s = m / (√v + ε)
    unbiased:  s = (m/γ) / (√(v/σ) + ε)                      (Eq. 10)
    flip w  iff  w · s > τ

Choices, following the authors' reference code:

* ``ε = 1e-10``: with σ as small as 1e-7 a larger ε changes which weights flip.
* A real-valued start (Glorot, as in the reference) is binarised by the first step:
  ``w₁ = −sign(w₀)`` if ``w₀ · s₁ > τ`` else ``sign(w₀)``, with sign(0) = +1.
* An exact tie ``w · s == τ`` does not flip. (The reference turns a tie into +1 through
  ``sign(0)``; that quirk is not reproduced.)
* τ is absolute, so the optimizer must see unscaled gradients: unscale a GradScaler first.
* Never apply weight decay to binary weights: it pushes m towards flipping.

After every :meth:`step` the optimizer holds, as tensors on the parameters' device (no host
sync): :attr:`flip_counts`, how many weights of each parameter flipped (in ``param_groups``
order, as exact whole numbers in the parameters' dtype), and :attr:`flips_total`.
Hyperparameters live in ``param_groups`` so schedules can change them between steps.

Full references, derivations and the paper-vs-code choices: ``docs/reference.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

# what torch's ``_foreach`` ops take; they return tuples
_Tensors = list[Tensor] | tuple[Tensor, ...]


def _check_rate(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


class _FlipOptimizer(Optimizer):
    """Shared step of Bop and Bop2ndOrder: update moments, compute the signal s, flip."""

    uses_second_moment = False

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], fused: bool) -> None:
        super().__init__(params, defaults)
        self.fused = fused
        self.flip_counts: Tensor | None = None
        self.flips_total: Tensor | None = None

    def _kind(self, group: dict[str, Any]) -> str:
        raise NotImplementedError

    def _signal(self, group: dict[str, Any], ms: list[Tensor], vs: list[Tensor]) -> _Tensors:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        counts: list[Tensor] = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            flipped: dict[int, Tensor] = {}
            if params:
                grads = [p.grad for p in params]
                ms, vs, fresh = self._moments(params)
                if self.fused and not any(fresh):
                    hyper = torch.tensor(
                        [group["gamma"], group.get("sigma", 1.0), group["tau"],
                         group.get("eps", 0.0)], dtype=params[0].dtype, device=params[0].device
                    )  # fmt: skip
                    fused = _compiled_step()(params, grads, ms, vs, hyper, self._kind(group))
                    flipped = dict(zip(map(id, params), fused.unbind()))
                    for p in group["params"]:
                        count = flipped.get(id(p))
                        counts.append(count if count is not None else p.new_zeros(()))
                    continue
                torch._foreach_lerp_(ms, grads, group["gamma"])
                if self.uses_second_moment:
                    torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), group["sigma"])
                signal = self._signal(group, ms, vs)
                flipped = dict(
                    zip(map(id, params), self._flip(params, signal, group["tau"], fresh))
                )
            for p in group["params"]:
                count = flipped.get(id(p))
                counts.append(count if count is not None else p.new_zeros(()))
        if counts:
            self.flip_counts = torch.stack(counts)
            self.flips_total = self.flip_counts.sum()
        return loss

    def _moments(self, params: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[bool]]:
        ms, vs, fresh = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if self.uses_second_moment:
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            fresh.append(state["step"] == 0)
            state["step"] += 1
            ms.append(state["m"])
            if self.uses_second_moment:
                vs.append(state["v"])
        return ms, vs, fresh

    def _flip(
        self, params: list[Tensor], signal: _Tensors, tau: float, fresh: list[bool]
    ) -> _Tensors:
        """``w ← −w`` where ``w·s > τ``; the flips per parameter. A handful of ``_foreach``
        ops whatever the number of parameters (no per-parameter Python loop in the step)."""
        f: _Tensors
        if self.uses_second_moment:  # the signal is a temporary of this step: reuse it
            f = signal
            torch._foreach_mul_(f, params)  # w·s
        else:  # Bop's signal is m itself
            f = torch._foreach_mul(signal, params)
        torch._foreach_sub_(f, tau)
        torch._foreach_sign_(f)
        torch._foreach_clamp_min_(f, 0.0)  # 1 where w·s > τ, else 0: a tie does not flip
        counts = torch._foreach_norm(f, 1)  # exact: a layer holds far fewer than 2^24 weights
        for p, first in zip(params, fresh):
            if first:  # a real-valued start is binarised by the first step, sign(0) = +1
                p.copy_(torch.where(p >= 0, 1.0, -1.0).to(p.dtype))
        torch._foreach_mul_(f, -2.0)
        torch._foreach_add_(f, 1.0)  # 1 − 2f: −1 flips, +1 keeps
        torch._foreach_mul_(params, f)
        return counts


def _fused_step(
    params: list[Tensor],
    grads: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    hyper: Tensor,
    kind: str,
) -> Tensor:
    """The whole step as one function for ``torch.compile`` to fuse: one pass over each
    parameter's weights, gradient and moments. Hyperparameters come as a tensor so that a
    schedule changing them does not recompile."""
    gamma, sigma, tau, eps = hyper[0], hyper[1], hyper[2], hyper[3]
    counts = []
    for i, (p, g, m) in enumerate(zip(params, grads, ms)):
        m.lerp_(g, gamma)
        if kind == "bop":
            s = m
        else:
            v = vs[i]
            v.lerp_(g * g, sigma)
            s = m / (v.sqrt() + eps) if kind == "biased" else m / gamma / ((v / sigma).sqrt() + eps)
        flip = p * s > tau
        p.copy_(torch.where(flip, -p, p))
        counts.append(flip.sum().to(p.dtype))
    return torch.stack(counts)


_COMPILED: Callable[..., Tensor] | None = None


def _compiled_step() -> Callable[..., Tensor]:
    """The fused step, compiled once per process (Inductor caches it on disk across processes)."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_fused_step, fullgraph=True, dynamic=False)
    return _COMPILED


class Bop(_FlipOptimizer):
    r"""Bop: flip a binary weight when its gradient's moving average agrees with it beyond τ.

    ``m ← m + γ (g − m)``; flip ``w`` iff ``w · m > τ``.

    Args:
        params: the binary weights (±1, or real values that the first step binarises).
        gamma: adaptivity rate γ ∈ (0, 1]. Default 1e-4 (Helwegen et al., NeurIPS 2019, CIFAR-10).
        tau: threshold τ ≥ 0. Default 1e-8 (same source).
        fused: run the step as one ``torch.compile``-d kernel per step (compiled on first use;
            the first step, which may binarise a real start, runs unfused).
    """

    def __init__(
        self, params: Iterable[Any], gamma: float = 1e-4, tau: float = 1e-8, fused: bool = False
    ) -> None:
        _check_rate("gamma", gamma)
        if not tau >= 0.0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        super().__init__(params, {"gamma": gamma, "tau": tau}, fused)

    def _kind(self, group: dict[str, Any]) -> str:
        return "bop"

    def _signal(self, group: dict[str, Any], ms: list[Tensor], vs: list[Tensor]) -> _Tensors:
        return ms


class Bop2ndOrder(_FlipOptimizer):
    r"""Bop2ndOrder: Bop with the first moment normalised by the second (Adam-like).

    ``m ← m + γ (g − m)``, ``v ← v + σ (g² − v)``;
    biased ``s = m / (√v + ε)``, unbiased ``s = (m/γ) / (√(v/σ) + ε)``; flip ``w`` iff
    ``w · s > τ``. For constant γ, σ the unbiased variant equals the biased one with threshold
    ``τ·γ/√σ`` (up to ε).

    Args:
        params: the binary weights (±1, or real values that the first step binarises).
        gamma: first-moment rate γ ∈ (0, 1]. Default 1e-7 (the optimum of Suarez-Ramirez et al.,
            CVPRW 2021, §5.1.1).
        sigma: second-moment rate σ ∈ (0, 1]. Default 1e-3.
        tau: threshold τ ≥ 0. Default 1e-6.
        unbiased: use Eq. 10's rescaled moments instead of the raw ones.
        eps: ε in the denominator. Default 1e-10, the reference code's value.
        fused: run the step as one ``torch.compile``-d kernel (see :class:`Bop`).
    """

    uses_second_moment = True

    def __init__(
        self,
        params: Iterable[Any],
        gamma: float = 1e-7,
        sigma: float = 1e-3,
        tau: float = 1e-6,
        unbiased: bool = False,
        eps: float = 1e-10,
        fused: bool = False,
    ) -> None:
        _check_rate("gamma", gamma)
        _check_rate("sigma", sigma)
        if not tau >= 0.0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps}")
        defaults = {"gamma": gamma, "sigma": sigma, "tau": tau, "unbiased": unbiased, "eps": eps}
        super().__init__(params, defaults, fused)

    def _kind(self, group: dict[str, Any]) -> str:
        return "unbiased" if group["unbiased"] else "biased"

    def _signal(self, group: dict[str, Any], ms: list[Tensor], vs: list[Tensor]) -> _Tensors:
        if group["unbiased"]:
            num: _Tensors = torch._foreach_div(ms, group["gamma"])
            den = torch._foreach_div(vs, group["sigma"])
            torch._foreach_sqrt_(den)
        else:
            num = ms
            den = torch._foreach_sqrt(vs)
        torch._foreach_add_(den, group["eps"])
        return torch._foreach_div(num, den)
