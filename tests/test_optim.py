"""Bop and Bop2ndOrder, checked flip by flip against hand-computed cases."""

from __future__ import annotations

import io
import math

import pytest
import torch

from bopsweep.optim import Bop, Bop2ndOrder, LatentAdam


def param(*values: float, dtype: torch.dtype = torch.float32) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=dtype))


def step(opt: torch.optim.Optimizer, p: torch.nn.Parameter, *grad: float) -> None:
    p.grad = torch.tensor(grad, dtype=p.dtype)
    opt.step()


# --- Bop -------------------------------------------------------------------------------------
def test_bop_flips_when_weight_times_momentum_exceeds_threshold_over_three_steps():
    w = param(1, 1, -1, -1)
    opt = Bop([w], gamma=0.5, tau=0.25)

    step(opt, w, 1, -1, 1, 0.5)  # m = [0.5, -0.5, 0.5, 0.25]; w·m = [0.5, -0.5, -0.5, -0.25]
    assert opt.state[w]["m"].tolist() == [0.5, -0.5, 0.5, 0.25]
    assert w.tolist() == [-1, 1, -1, -1]
    assert opt.flip_counts.tolist() == [1]

    step(opt, w, 1, -1, -1, 0.5)  # m = [0.75, -0.75, -0.25, 0.375]; w·m = [-.75, -.75, .25, -.375]
    assert opt.state[w]["m"].tolist() == [0.75, -0.75, -0.25, 0.375]
    assert w.tolist() == [-1, 1, -1, -1]  # w·m == τ for the third weight: a tie does not flip
    assert opt.flips_total.item() == 0

    # m = [0.875, 0.125, -0.625, -0.3125]; w·m = [-.875, .125, .625, .3125]
    step(opt, w, 1, 1, -1, -1)
    assert w.tolist() == [-1, 1, 1, 1]
    assert opt.flips_total.item() == 2


def test_bop_binarises_a_real_valued_start_on_the_first_step():
    # w₁ = −sign(w₀) where w₀·m₁ > τ, else sign(w₀); sign(0) = +1.
    w = param(0.3, -0.2, 0.0, -0.7, 0.5)
    opt = Bop([w], gamma=1.0, tau=0.0)
    step(opt, w, 1, 1, -1, -1, -1)  # w₀·m = [0.3, -0.2, 0, 0.7, -0.5]
    assert w.tolist() == [-1, -1, 1, 1, 1]
    assert opt.flips_total.item() == 2


def test_bop_momentum_is_not_scale_invariant():
    # τ is absolute: the same gradients ×1000 cross it where the originals do not.
    g = [0.001, -0.002, 0.003]
    small, large = param(1, 1, 1), param(1, 1, 1)
    opt_small, opt_large = Bop([small], gamma=0.1, tau=1e-3), Bop([large], gamma=0.1, tau=1e-3)
    step(opt_small, small, *g)
    step(opt_large, large, *(1000 * x for x in g))
    assert small.tolist() == [1, 1, 1]
    assert large.tolist() == [-1, 1, -1]


# --- Bop2ndOrder -----------------------------------------------------------------------------
def reference_bop2(w, grads, gamma, sigma, tau, unbiased, eps=1e-10):
    """The update rule written out in plain Python floats, one weight at a time."""
    w, m, v = list(w), [0.0] * len(w), [0.0] * len(w)
    history = []
    for g in grads:
        for i, gi in enumerate(g):
            m[i] = m[i] + gamma * (gi - m[i])
            v[i] = v[i] + sigma * (gi * gi - v[i])
            if unbiased:
                s = (m[i] / gamma) / (math.sqrt(v[i] / sigma) + eps)
            else:
                s = m[i] / (math.sqrt(v[i]) + eps)
            if w[i] * s > tau:
                w[i] = -w[i]
        history.append(list(w))
    return history


@pytest.mark.parametrize("unbiased", [False, True])
def test_bop2_matches_the_written_out_formula_step_by_step(unbiased):
    torch.manual_seed(0)
    w0 = torch.where(torch.rand(64) < 0.5, -1.0, 1.0).double()
    grads = (torch.randn(6, 64, dtype=torch.float64) * torch.logspace(-3, 1, 64)).tolist()
    gamma, sigma = 0.3, 0.2
    tau = 0.5 if unbiased else 0.4
    expected = reference_bop2(w0.tolist(), grads, gamma, sigma, tau, unbiased)
    w = torch.nn.Parameter(w0.clone())
    opt = Bop2ndOrder([w], gamma=gamma, sigma=sigma, tau=tau, unbiased=unbiased)
    flips = []
    for g, want in zip(grads, expected):
        before = w.detach().clone()
        step(opt, w, *g)
        assert w.tolist() == want
        flips.append(int(opt.flips_total))
        assert flips[-1] == int((before != w).sum())
    assert sum(flips) > 0  # the case exercises flipping at all


def test_bop2_biased_by_hand():
    # γ = 0.5, σ = 0.25: step 1 gives m = g/2, v = g²/4, so s = g/(|g| + 2ε) ≈ sign(g).
    w = param(1, -1, -1, 1, dtype=torch.float64)
    opt = Bop2ndOrder([w], gamma=0.5, sigma=0.25, tau=0.5)
    step(opt, w, 2, -2, 2, 0)
    assert opt.state[w]["m"].tolist() == [1, -1, 1, 0]
    assert opt.state[w]["v"].tolist() == [1, 1, 1, 0]
    assert w.tolist() == [-1, 1, -1, 1]  # w·s ≈ [1, 1, −1, 0]: the first two flip
    # step 2, g = [−4, 0, 2, 0]: m = [−1.5, −0.5, 1.5, 0], v = [4.75, 0.75, 1.75, 0]
    # s = m/√v ≈ [−0.688, −0.577, 1.134, 0]; w·s ≈ [0.688, −0.577, −1.134, 0]
    step(opt, w, -4, 0, 2, 0)
    assert opt.state[w]["v"].tolist() == [4.75, 0.75, 1.75, 0]
    assert w.tolist() == [1, 1, -1, 1]
    assert opt.flips_total.item() == 1


def test_bop2_exact_tie_does_not_flip():
    # γ = σ = 1 and ε = 1: s = g / (|g| + 1) = 0.5 exactly for g = 1, and τ = 0.5.
    w = param(1, 1)
    opt = Bop2ndOrder([w], gamma=1.0, sigma=1.0, tau=0.5, eps=1.0)
    step(opt, w, 1, 3)  # s = [0.5, 0.75]
    assert w.tolist() == [1, -1]


@pytest.mark.parametrize("unbiased", [False, True])
def test_bop2_zero_gradient_history_gives_no_flip_and_no_nan(unbiased):
    w = param(1, -1, 1, -1)
    opt = Bop2ndOrder([w], unbiased=unbiased, tau=0.0)
    for _ in range(3):
        step(opt, w, 0, 0, 0, 0)
    assert w.tolist() == [1, -1, 1, -1]
    assert opt.flips_total.item() == 0
    assert not torch.isnan(opt.state[w]["m"]).any() and not torch.isnan(opt.state[w]["v"]).any()


def test_bop2_unbiased_first_step_flips_every_weight_agreeing_with_its_gradient():
    torch.manual_seed(1)
    w0 = torch.where(torch.rand(10_000) < 0.5, -1.0, 1.0)
    g = torch.randn(10_000)
    w = torch.nn.Parameter(w0.clone())
    opt = Bop2ndOrder([w], unbiased=True)  # the paper's γ=1e-7, σ=1e-3, τ=1e-6
    w.grad = g
    opt.step()
    agree = torch.sign(w0) == torch.sign(g)
    assert torch.equal(w, torch.where(agree, -w0, w0))
    fraction = opt.flips_total.item() / w.numel()
    assert math.log(fraction + math.exp(-9)) == pytest.approx(math.log(0.5), abs=0.05)


def test_bop2_biased_first_step_signal_is_gamma_over_root_sigma_times_sign():
    w0 = torch.tensor([1.0, -1.0, 1.0, -1.0])
    g = torch.tensor([0.3, -2.0, -5.0, 7.0])
    # s₁ = γg/(√σ|g| + ε) ≈ γ/√σ·sign(g) = 3.16e-6·sign(g): above τ = 1e-6, below τ = 1e-5.
    low, high = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    for w, tau in ((low, 1e-6), (high, 1e-5)):
        w.grad = g.clone()
        Bop2ndOrder([w], gamma=1e-7, sigma=1e-3, tau=tau).step()
    assert low.tolist() == [-1, 1, 1, -1]
    assert high.tolist() == w0.tolist()


def random_run(opt_factory, grads, w0):
    w = torch.nn.Parameter(w0.clone())
    opt = opt_factory([w])
    out = []
    for g in grads:
        w.grad = g.clone()
        opt.step()
        out.append((w.detach().clone(), opt.flip_counts.clone()))
    return out


def test_bop2_biased_signal_is_invariant_to_gradient_scale():
    torch.manual_seed(2)
    w0 = torch.where(torch.rand(2000) < 0.5, -1.0, 1.0).double()
    grads = [torch.randn(2000, dtype=torch.float64) for _ in range(8)]

    def make(params):
        return Bop2ndOrder(params, gamma=0.1, sigma=0.05, tau=0.3)

    plain = random_run(make, grads, w0)
    scaled = random_run(make, [g * 1000 for g in grads], w0)
    assert sum(int(c) for _, c in plain) > 0
    for (w_a, c_a), (w_b, c_b) in zip(plain, scaled):
        assert torch.equal(w_a, w_b) and torch.equal(c_a, c_b)


def test_bop2_unbiased_equals_biased_with_threshold_tau_gamma_over_root_sigma():
    torch.manual_seed(3)
    gamma, sigma, tau = 1e-2, 1e-3, 1e-1
    w0 = torch.where(torch.rand(2000) < 0.5, -1.0, 1.0).double()
    grads = [torch.randn(2000, dtype=torch.float64) for _ in range(10)]
    unbiased = random_run(
        lambda p: Bop2ndOrder(p, gamma=gamma, sigma=sigma, tau=tau, unbiased=True), grads, w0
    )
    biased = random_run(
        lambda p: Bop2ndOrder(p, gamma=gamma, sigma=sigma, tau=tau * gamma / math.sqrt(sigma)),
        grads,
        w0,
    )
    assert sum(int(c) for _, c in unbiased) > 0
    for (w_u, c_u), (w_b, c_b) in zip(unbiased, biased):
        assert torch.equal(w_u, w_b) and torch.equal(c_u, c_b)


def test_state_dict_round_trip_mid_run_continues_identically():
    torch.manual_seed(4)
    grads = [torch.randn(500) for _ in range(6)]
    w = torch.nn.Parameter(torch.where(torch.rand(500) < 0.5, -1.0, 1.0))
    opt = Bop2ndOrder([w], gamma=0.1, sigma=0.01, tau=0.5)
    for g in grads[:3]:
        w.grad = g
        opt.step()
    buffer = io.BytesIO()
    torch.save({"w": w.detach().clone(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert torch.equal(saved["opt"]["state"][0]["m"], opt.state[w]["m"])

    w2 = torch.nn.Parameter(saved["w"])
    opt2 = Bop2ndOrder([w2])  # hyperparameters come back with the state dict
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["gamma"] == 0.1
    for g in grads[3:]:
        w.grad, w2.grad = g, g.clone()
        opt.step()
        opt2.step()
        assert torch.equal(w, w2)
        assert torch.equal(opt.state[w]["v"], opt2.state[w2]["v"])


def test_a_change_to_param_groups_takes_effect_on_the_next_step():
    w = param(1, 1)
    opt = Bop([w], gamma=1.0, tau=10.0)
    step(opt, w, 1, 2)
    assert w.tolist() == [1, 1]  # w·m = [1, 2] is below τ = 10
    opt.param_groups[0]["tau"] = 1.5  # what a schedule does between steps
    step(opt, w, 1, 2)
    assert w.tolist() == [1, -1]
    opt.param_groups[0]["gamma"] = 0.5
    step(opt, w, -3, 0)  # m = [1 + 0.5·(−3 − 1), 2 + 0.5·(0 − 2)] = [−1, 1]
    assert opt.state[w]["m"].tolist() == [-1, 1]


def test_flip_counts_are_per_parameter_tensors_in_param_group_order():
    a, b, c = param(1, 1, 1), param(-1, -1), param(1)
    opt = Bop([{"params": [a, b]}, {"params": [c], "tau": 100.0}], gamma=1.0, tau=0.0)
    a.grad, b.grad, c.grad = torch.tensor([1.0, 1.0, -1.0]), torch.tensor([-1.0, 1.0]), None
    opt.step()
    assert isinstance(opt.flip_counts, torch.Tensor)
    assert opt.flip_counts.tolist() == [2, 1, 0]  # c had no gradient: untouched, counted 0
    assert opt.flips_total.item() == 3
    assert c.tolist() == [1]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda p: Bop(p, gamma=0.0), "gamma"),
        (lambda p: Bop(p, gamma=1.5), "gamma"),
        (lambda p: Bop(p, tau=-1.0), "tau"),
        (lambda p: Bop2ndOrder(p, sigma=0.0), "sigma"),
        (lambda p: Bop2ndOrder(p, sigma=2.0), "sigma"),
        (lambda p: Bop2ndOrder(p, eps=0.0), "eps"),
    ],
)
def test_invalid_hyperparameters_are_refused(factory, message):
    with pytest.raises(ValueError, match=message):
        factory([param(1)])


# --- latent-weight baseline -----------------------------------------------------------------
def test_latent_adam_clips_to_unit_interval_and_counts_sign_changes():
    w = param(0.995, -0.001, 0.5)
    opt = LatentAdam([w], lr=0.01)
    step(opt, w, -1, -1, 1)  # Adam's first step moves each weight by lr·sign(g) = 0.01 against g
    assert w.tolist() == pytest.approx([1.0, 0.009, 0.49], abs=1e-6)
    assert w.max().item() == 1.0  # 1.005 clipped
    assert opt.flip_counts.tolist() == [1]  # −0.001 → +0.009 changed sign


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        lambda ps, fused: Bop(ps, gamma=1e-2, tau=1e-4, fused=fused),
        lambda ps, fused: Bop2ndOrder(ps, gamma=1e-2, sigma=1e-2, tau=1e-1, fused=fused),
        lambda ps, fused: Bop2ndOrder(
            ps, gamma=1e-2, sigma=1e-2, tau=0.3, unbiased=True, fused=fused
        ),
    ],
    ids=["bop", "bop2-biased", "bop2-unbiased"],
)
def test_the_fused_step_flips_exactly_like_the_eager_one(make):
    torch.manual_seed(5)
    shapes = [(16, 8, 3, 3), (64, 32), (10, 64)]
    start = [torch.randn(s) * 0.1 for s in shapes]  # real-valued: the first step binarises
    grads = [[torch.randn(s) for s in shapes] for _ in range(6)]
    runs = []
    for fused in (False, True):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        opt = make(params, fused)
        history = []
        for k, step_grads in enumerate(grads):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            if k == 3:
                opt.param_groups[0]["tau"] *= 0.5  # a schedule: no recompilation, same flips
            opt.step()
            history.append((opt.flip_counts.clone(), [p.detach().clone() for p in params]))
        runs.append(history)
    for (counts_a, w_a), (counts_b, w_b) in zip(*runs):
        assert torch.equal(counts_a, counts_b)
        assert all(torch.equal(a, b) for a, b in zip(w_a, w_b))
    assert sum(int(c.sum()) for c, _ in runs[1][1:]) > 0
