"""BinaryNet matches the reference architecture."""

from __future__ import annotations

import pytest
import torch

from bopsweep.models import BinaryNet, binarize, sign_ste

PAPER_COUNTS = {
    "conv1": 3_456,
    "conv2": 147_456,
    "conv3": 294_912,
    "conv4": 589_824,
    "conv5": 1_179_648,
    "conv6": 2_359_296,
    "fc1": 4_718_592,
    "fc2": 1_048_576,
    "fc3": 10_240,
}


def test_full_width_binary_weight_count_per_layer_and_total():
    model = BinaryNet(width=1.0)
    counts = {name: layer.weight.numel() for name, layer in model.layers.items()}
    assert counts == PAPER_COUNTS
    assert sum(p.numel() for p in model.binary_parameters()) == 10_352_000


def test_real_parameters_are_the_norm_layers_only():
    model = BinaryNet(width=1 / 8)
    binary = {id(p) for p in model.binary_parameters()}
    real = list(model.real_parameters())
    assert real and not binary & {id(p) for p in real}
    assert len(binary) + len(real) == len(list(model.parameters()))
    # shift-only batch norm: one bias per channel, no scale
    assert sum(p.numel() for p in real) == sum(k.weight.shape[0] for k in model.layers.values())


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_feature_map_shapes_follow_the_reference(norm):
    model = BinaryNet(width=1 / 8, norm=norm)
    shapes = {}
    for name, layer in model.layers.items():
        layer.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert shapes["conv1"] == (2, 16, 30, 30)  # valid padding
    assert shapes["conv2"] == (2, 16, 30, 30)  # same padding, then max-pool → 15×15
    assert shapes["conv4"] == (2, 32, 15, 15)
    assert shapes["conv6"] == (2, 64, 7, 7)
    assert shapes["fc1"] == (2, 128)


def test_width_multiplier_scales_every_hidden_width():
    model = BinaryNet(width=0.25)
    widths = [k.weight.shape[0] for k in model.layers.values()]
    assert widths == [32, 32, 64, 64, 128, 128, 256, 256, 10]


def test_sign_maps_zero_to_plus_one():
    assert binarize(torch.tensor([-2.0, -0.0, 0.0, 0.5])).tolist() == [-1, 1, 1, 1]


def test_straight_through_gradient_is_cut_where_input_exceeds_one():
    x = torch.tensor([-1.5, -1.0, -0.2, 0.0, 0.7, 1.0, 3.0], requires_grad=True)
    sign_ste(x).sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_sign_init_starts_at_plus_minus_one_and_glorot_is_real():
    signed = BinaryNet(width=1 / 8, init="sign")
    glorot = BinaryNet(width=1 / 8, init="glorot")
    for p in signed.binary_parameters():
        assert set(p.unique().tolist()) <= {-1.0, 1.0}
    k = glorot.layers["conv2"].weight
    bound = (6 / (k.shape[1] * 9 + k.shape[0] * 9)) ** 0.5
    assert k.abs().max() <= bound and k.abs().max() < 1 and len(k.unique()) > 2


def test_quantized_kernels_are_binarised_in_the_forward_pass():
    model = BinaryNet(width=1 / 16, init="glorot", quantize_kernels=True).eval()
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    with torch.no_grad():
        for p in model.binary_parameters():
            p.copy_(binarize(p))
    assert torch.equal(before, model(x))


def test_layer_norm_normalises_channels_at_each_position():
    model = BinaryNet(width=1 / 8, norm="layer")
    captured = {}
    model.norms["conv3"].register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
    model(torch.randn(2, 3, 32, 32))
    o = captured["o"]  # scale 1, shift 0 at start: zero mean, unit variance over channels
    assert torch.allclose(o.mean(dim=1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(o.var(dim=1, unbiased=False), torch.ones(()), atol=1e-2)


def test_bad_model_arguments_are_refused():
    with pytest.raises(ValueError, match="width"):
        BinaryNet(width=0)
    with pytest.raises(ValueError, match="norm"):
        BinaryNet(norm="group")
    with pytest.raises(ValueError, match="init"):
        BinaryNet(init="zeros")
