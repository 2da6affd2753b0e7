"""The first step as the reference code takes it.

Under Bop and Bop2ndOrder the kernels enter the forward pass as they are (the reference's
Bop-trained kernels carry no quantizer), so a Glorot start's first forward and backward pass run
on the real Glorot kernels, and the optimizer's first step binarises them. The latent-weight
baseline binarises its kernels in every forward pass, with the straight-through estimator.
Input activations are binarised in both (except conv1's, the image).

The expected values are computed independently of the binary layers: plain ``F.conv2d`` and
``F.linear`` on leaf copies of the kernels, with the model's own pool and norm modules. Input
activations go through ``sign_ste``, whose forward and gradient ``tests/test_model.py`` checks.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from bopsweep.models import BinaryNet, binarize, sign_ste
from bopsweep.studies import TrialConfig
from bopsweep.trial import train
from bopsweep.trial.train import build_model, build_optimizers, run_trial

WIDTH = 1 / 16
FLIP_OPTIMIZERS = ("bop", "bop2")


def model_for(optimizer: str) -> BinaryNet:
    """The model the trainer builds for ``optimizer``, at a tiny width, Glorot start."""
    torch.manual_seed(0)
    return build_model(TrialConfig(optimizer=optimizer, width=WIDTH, device="cpu").resolved())


def batch(n: int = 32, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def layer_op(model: BinaryNet, name: str, x: Tensor, kernel: Tensor) -> Tensor:
    """What binary layer ``name`` computes with ``kernel`` used as given: plain torch ops."""
    layer = model.layers[name]
    if name.startswith("conv"):
        x_in = x if name == "conv1" else sign_ste(x)
        return F.conv2d(x_in, kernel, padding=layer.padding)
    return F.linear(sign_ste(x), kernel)


def reference_logits(model: BinaryNet, x: Tensor, kernels: dict[str, Tensor]) -> Tensor:
    """The whole network run functionally on ``kernels``, with ``model``'s pool and norms."""
    for name in model.layers:
        if name == "fc1":
            x = x.flatten(1)
        x = layer_op(model, name, x, kernels[name])
        if name in model.pooled:
            x = model.pool(x)
        x = model.norms[name](x)
    return x


def kernel_grads(model: BinaryNet, x: Tensor, y: Tensor, kernels: dict[str, Tensor]) -> dict:
    """Gradients of the loss with respect to leaf copies of ``kernels``, computed functionally
    (on a copy of the model, so its batch-norm statistics are left alone)."""
    model = copy.deepcopy(model)
    leaves = {name: k.detach().clone().requires_grad_() for name, k in kernels.items()}
    F.cross_entropy(reference_logits(model, x, leaves), y).backward()
    return {name: leaf.grad for name, leaf in leaves.items()}


def model_grads(model: BinaryNet, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {name: layer.weight.grad.clone() for name, layer in model.layers.items()}


def raw_kernels(model: BinaryNet) -> dict[str, Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in model.layers.items()}


def signed(kernels: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: binarize(k) for name, k in kernels.items()}


def capture_layers(model: BinaryNet) -> dict[str, tuple[Tensor, Tensor]]:
    """Each binary layer's (input, output) of the next forward pass."""
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    for name, layer in model.layers.items():
        layer.register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, (i[0].detach(), o.detach()))
        )
    return seen


def close(a: Tensor, b: Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())


def test_the_trainer_binarises_kernels_in_the_forward_pass_only_for_latent_weights():
    quantized = [model_for(o).quantize_kernels for o in ("bop", "bop2", "latent")]
    assert quantized == [False, False, True]
    for optimizer, quantized in (("bop", False), ("latent", True)):
        layers = model_for(optimizer).layers.values()
        assert all(layer.quantize_kernel is quantized for layer in layers)
    assert BinaryNet(WIDTH).quantize_kernels  # the library default keeps the forward binary


@pytest.mark.parametrize("optimizer", FLIP_OPTIMIZERS)
def test_a_flip_optimizer_s_layers_compute_on_the_raw_glorot_kernels(optimizer):
    model = model_for(optimizer)
    kernels = raw_kernels(model)
    assert all(len(k.unique()) > 2 and k.abs().max() < 1 for k in kernels.values())  # Glorot
    seen = capture_layers(model)
    model(batch()[0])
    assert list(seen) == list(model.layers)
    for name, (x, out) in seen.items():
        with torch.no_grad():
            on_raw = layer_op(model, name, x, kernels[name])
            on_sign = layer_op(model, name, x, binarize(kernels[name]))
        assert close(out, on_raw), name
        assert not close(out, on_sign), name


@pytest.mark.parametrize("optimizer", FLIP_OPTIMIZERS)
def test_the_step_1_gradient_is_the_one_of_the_raw_glorot_kernels(optimizer):
    model = model_for(optimizer)
    x, y = batch()
    kernels = raw_kernels(model)
    got = model_grads(model, x, y)
    on_raw = kernel_grads(model, x, y, kernels)
    on_sign = kernel_grads(model, x, y, signed(kernels))
    for name in model.layers:
        assert close(got[name], on_raw[name]), name
        assert not close(got[name], on_sign[name]), name
        # not a rescaling either: the signs of the two gradients disagree often
        disagree = ((got[name] > 0) != (on_sign[name] > 0)).float().mean().item()
        assert disagree > 0.1, name


def test_latent_weights_compute_on_sign_of_the_kernel_with_the_straight_through_gradient():
    model = model_for("latent")
    with torch.no_grad():  # latent weights beyond ±1: the estimator passes no gradient there
        for layer in model.layers.values():
            flat = layer.weight.view(-1)
            flat[::7] = 1.5 * binarize(flat[::7])
    kernels = raw_kernels(model)
    outside = {name: k.abs() > 1 for name, k in kernels.items()}
    assert all(o.any() and not o.all() for o in outside.values())
    x, y = batch()
    seen = capture_layers(model)
    got = model_grads(model, x, y)
    on_sign = kernel_grads(model, x, y, signed(kernels))
    for name, (inp, out) in seen.items():
        with torch.no_grad():
            assert close(out, layer_op(model, name, inp, binarize(kernels[name]))), name
            assert not close(out, layer_op(model, name, inp, kernels[name])), name
        expected = on_sign[name] * (~outside[name])
        assert close(got[name], expected), name
        assert (got[name][outside[name]] == 0).all() and got[name][~outside[name]].any(), name


@pytest.mark.parametrize("unbiased", [False, True])
def test_after_one_bop2_step_the_kernels_are_binary_and_the_forward_is_the_quantized_one(
    unbiased,
):
    config = TrialConfig(optimizer="bop2", unbiased=unbiased, width=WIDTH, device="cpu")
    torch.manual_seed(0)
    model = build_model(config.resolved())
    binary, real = build_optimizers(config.resolved(), model)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    binary.step()
    real.step()
    for p in model.binary_parameters():
        assert set(p.unique().tolist()) == {-1.0, 1.0}
    quantized = BinaryNet(WIDTH, quantize_kernels=True)
    quantized.load_state_dict(model.state_dict())
    x2, y2 = batch(seed=2)
    for m in (model, quantized):
        m.eval()
    with torch.no_grad():
        assert torch.equal(model(x2), quantized(x2))
    for m in (model, quantized):
        m.train()
    a, b = model_grads(model, x2, y2), model_grads(quantized, x2, y2)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_bop_trial_s_first_gradient_is_the_one_of_its_raw_glorot_kernels(
    small_cifar_dir, monkeypatch
):
    """The trainer's own first step (channels-last, its data, its loss): spied on, then
    recomputed functionally on the kernels the model was built with."""
    seen: dict = {"grads": {}}

    def spying_build_model(config):
        model = build_model(config)
        seen["start"] = copy.deepcopy(model)
        for name, layer in model.layers.items():
            layer.weight.register_hook(lambda g, name=name: first_grad(name, g))
        model.register_forward_pre_hook(first_input)
        return model

    # hooks that return None: the gradient and the input are kept as they are
    def first_grad(name, grad):
        seen["grads"].setdefault(name, grad.clone())

    def first_input(module, args):
        seen.setdefault("x", args[0].detach().clone())

    def spying_cross_entropy(logits, y, **kw):
        if logits.requires_grad:  # a training batch
            seen.setdefault("y", y.clone())
        return F.cross_entropy(logits, y, **kw)

    monkeypatch.setattr(train, "build_model", spying_build_model)
    monkeypatch.setattr(train, "F", SimpleNamespace(cross_entropy=spying_cross_entropy))
    settings = {"width": WIDTH, "device": "cpu", "epochs": 1, "batch_size": 20}
    run_trial(
        TrialConfig(optimizer="bop2", unbiased=True, data_dir=str(small_cifar_dir), **settings)
    )
    start = seen["start"]
    kernels = raw_kernels(start)
    assert all(len(k.unique()) > 2 for k in kernels.values())  # the Glorot start
    on_raw = kernel_grads(start, seen["x"], seen["y"], kernels)
    on_sign = kernel_grads(start, seen["x"], seen["y"], signed(kernels))
    for name in start.layers:
        assert close(seen["grads"][name], on_raw[name]), name
        assert not close(seen["grads"][name], on_sign[name]), name
