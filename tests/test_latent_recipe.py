"""The Adam side of the comparison: AdamBNN's recipe for the latent-weight baseline (weight
decay, two-step training, a linear learning-rate decay) and its two weight metrics, the FF and
C2I ratios, for every optimizer.

Liu et al., How Do Adam and Training Strategies Help BNNs Optimization?, ICML 2021,
arXiv:2106.11309.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing import event_accumulator

from bopsweep.models import BinaryNet
from bopsweep.optim import LatentAdam
from bopsweep.readers.plots.data import Run, StudyData
from bopsweep.readers.plots.weights import has_weight_metrics, weights_figure
from bopsweep.studies import TrialConfig, config_id
from bopsweep.trial.flips import FlipLog, InitialSigns, pack_bits, unpack_bits
from bopsweep.trial.run_dir import read_rows
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.train import build_optimizers, run_trial
from bopsweep.trial.two_step import TwoStep
from tests.helpers import TINY, invoke, one_line_error

LINEAR_TO_ZERO = Schedule(kind="polynomial", end=0.0, power=1.0)


def tiny(data_dir: Path, **overrides) -> TrialConfig:
    values = {"width": 1 / 16, "device": "cpu", "data_dir": str(data_dir), "batch_size": 20}
    return TrialConfig(**{**values, "epochs": 2, **overrides})


def initial_signs(model: BinaryNet) -> InitialSigns:
    return InitialSigns(model.binary_layer_names, model.binary_parameters())


def recipe(data_dir: Path, epochs: int, two_step: int, **overrides) -> TrialConfig:
    """The latent optimizer with AdamBNN's recipe, on generated data."""
    return tiny(
        data_dir,
        optimizer="latent",
        epochs=epochs,
        two_step=two_step,
        weight_decay=5e-6,
        schedules={"lr": LINEAR_TO_ZERO},
        **overrides,
    )


# --- FF ratio: the share of binary weights whose sign flips in one step --------------------------
def test_ff_ratio_is_the_share_of_latent_signs_flipped_by_one_step():
    # Adam's first step moves every weight by lr·g/(|g| + ε) ≈ lr = 0.01 against its gradient
    a = torch.tensor([0.001, -0.001, 0.0, -0.005, 0.5, -0.5])
    b = torch.tensor([0.0, 0.3])
    grads = [torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0, -1.0]), torch.tensor([-1.0, 1.0])]
    # a: 0.001 → −0.009 flips, −0.001 → 0.009 flips, 0 (sign +1) → −0.01 flips,
    #    −0.005 → −0.015 and ±0.5 keep their signs; b: 0 → 0.01 stays +1, 0.3 stays: no flip
    params = [a.clone().requires_grad_(), b.clone().requires_grad_()]
    for p, g in zip(params, grads):
        p.grad = g
    opt = LatentAdam(params, lr=0.01)
    opt.step()
    assert opt.flip_counts.tolist() == [3, 0]
    log = FlipLog(["a", "b"], [6, 2], log_every=1, device=torch.device("cpu"))
    log.record(1, opt.flip_counts)
    row, _ = log.end_epoch(1)
    assert row["flip_frac_a"] == pytest.approx(3 / 6) and row["flip_frac_b"] == 0
    assert row["flip_frac"] == pytest.approx(3 / 8)  # the FF ratio, network-wide
    assert row["pi"] == pytest.approx(math.log(3 / 8 + math.exp(-9)))  # π_t = ln(FF + e⁻⁹)


# --- C2I ratio: the share of binary weights whose sign is still the initial one ------------------
def paper_c2i(start: list[torch.Tensor], now: list[torch.Tensor]) -> float:
    """AdamBNN's C2I = 1 − Σ_l Σ_w |sign(w_T) − sign(w_0)| / 2 / N, with sign(0) = +1."""

    def sign(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t >= 0, 1.0, -1.0)

    n = sum(t.numel() for t in start)
    moved = sum(float((sign(b) - sign(a)).abs().sum()) for a, b in zip(start, now))
    return 1 - moved / 2 / n


def test_c2i_ratio_is_the_share_of_signs_still_the_initial_one_with_sign_0_as_plus_1():
    start = [torch.tensor([0.0, -0.2, 0.3]), torch.tensor([[0.7], [-0.1]])]
    initial = InitialSigns(["a", "b"], start)
    now = [torch.tensor([-0.1, 0.0, 0.2]), torch.tensor([[1.0], [1.0]])]
    # a: + → −, − → + (0 is +1), + → +: 1 of 3 kept; b: + → +, − → +: 1 of 2 kept
    assert initial.c2i(now) == pytest.approx({"c2i": 2 / 5, "c2i_a": 1 / 3, "c2i_b": 1 / 2})
    assert initial.c2i(now)["c2i"] == pytest.approx(paper_c2i(start, now))
    assert initial.c2i(start) == {"c2i": 1.0, "c2i_a": 1.0, "c2i_b": 1.0}  # nothing changed
    flipped = [torch.where(t >= 0, -1.0, 1.0) for t in start]
    assert initial.c2i(flipped) == {"c2i": 0.0, "c2i_a": 0.0, "c2i_b": 0.0}  # every sign did
    assert paper_c2i(start, start) == 1.0 and paper_c2i(start, flipped) == 0.0
    assert initial.columns == ["c2i", "c2i_a", "c2i_b"]


def test_c2i_matches_the_papers_formula_on_random_sign_tensors():
    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(4, 3, 3, 3, generator=gen), torch.randn(50, generator=gen)]
    now = [t * torch.where(torch.rand(t.shape, generator=gen) < 0.3, -1.0, 1.0) for t in start]
    assert InitialSigns(["a", "b"], start).c2i(now)["c2i"] == pytest.approx(paper_c2i(start, now))


def test_initial_signs_survive_a_checkpoint_bit_packed():
    kernels = [torch.randn(3, 5, 7), torch.randn(13)]
    initial = InitialSigns(["a", "b"], kernels)
    state = initial.state_dict()
    assert [p.dtype for p in state["packed"]] == [torch.uint8, torch.uint8]
    assert [p.numel() for p in state["packed"]] == [14, 2]  # 105 and 13 signs, 8 a byte
    other = InitialSigns(["a", "b"], [-k for k in kernels])
    other.load_state_dict(state)
    assert other.c2i(kernels) == {"c2i": 1.0, "c2i_a": 1.0, "c2i_b": 1.0}
    mask = torch.tensor([True, False, False, True, True, False, True, True, False])
    assert pack_bits(mask).tolist() == [1 + 8 + 16 + 64 + 128, 0]
    assert torch.equal(unpack_bits(pack_bits(mask), 9), mask)


def test_every_optimizer_logs_ff_and_c2i_per_layer_and_network_wide(small_cifar_dir, tmp_path):
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3"]
    for optimizer in ("bop", "bop2", "latent"):
        out = tmp_path / optimizer
        run_trial(tiny(small_cifar_dir, optimizer=optimizer, init="sign", log_every=1), out)
        rows = read_rows(out / "metrics.csv")
        steps = read_rows(out / "steps.csv")
        for column in ("flip_frac", "c2i", *(f"c2i_{n}" for n in layers)):
            assert all(0 <= r[column] <= 1 for r in rows), (optimizer, column)
        # C2I is measured against the start: at most the flips made since left it
        flips = sum(s["flip_frac"] for s in steps if s["epoch"] == 1)
        assert 1 - rows[0]["c2i"] <= flips + 1e-9
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        initial = InitialSigns(layers, [torch.zeros(n) for n in state["initial_signs"]["numels"]])
        initial.load_state_dict(state["initial_signs"])
        kernels = [v for k, v in state["model"].items() if k.startswith("layers.")]
        assert initial.c2i(kernels)["c2i"] == pytest.approx(rows[-1]["c2i"])


# --- weight decay: classic L2 on the latent kernels only -----------------------------------------
def test_weight_decay_is_classic_l2_on_the_latent_kernels_only():
    torch.manual_seed(0)
    wd, lr, (b1, b2), eps = 0.05, 0.01, (0.9, 0.999), 1e-7
    model = BinaryNet(width=1 / 16, norm="layer")  # layer norm: scales start at 1, decay shows
    config = TrialConfig(optimizer="latent", weight_decay=wd, lr=lr).resolved()
    binary, real = build_optimizers(config, model)
    assert [g["weight_decay"] for g in real.param_groups] == [0]
    kernel = model.layers["fc3"].weight
    w0 = kernel.detach().clone()
    norms_before = [p.detach().clone() for p in model.real_parameters()]
    grads = [torch.full_like(w0, 0.01), torch.full_like(w0, -0.03)]
    # by hand: g' = g + wd·w (classic L2), then Adam with bias correction, then the clip
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        g = g + wd * w
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        w = (w - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)).clamp(-1, 1)
    for g in grads:
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        kernel.grad = g.clone()
        binary.step()
        real.step()
    assert torch.allclose(kernel.detach(), w, atol=1e-7, rtol=0)
    # not AdamW: decoupled decay would shrink w by lr·wd·w beside an Adam step on g alone
    decoupled, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        decoupled = decoupled * (1 - lr * wd)
        decoupled -= lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    assert not torch.allclose(kernel.detach(), decoupled, atol=1e-5, rtol=0)
    # the norm layers, with zero gradients, did not move: no decay on them
    for before, p in zip(norms_before, model.real_parameters()):
        assert torch.equal(before, p.detach())


# --- two-step training ---------------------------------------------------------------------------
def test_step_one_feeds_real_kernels_and_step_two_their_signs():
    torch.manual_seed(0)
    model = BinaryNet(width=1 / 16)
    config = TrialConfig(optimizer="latent", epochs=3, two_step=2, weight_decay=1e-3).resolved()
    binary, real = build_optimizers(config, model)
    steps = TwoStep(config, model, binary, real, initial_signs(model))
    image, hidden = torch.randn(2, 3, 32, 32), torch.randn(2, 8, 15, 15)
    conv1, conv2, fc3 = (model.layers[n] for n in ("conv1", "conv2", "fc3"))
    features = torch.randn(2, fc3.weight.shape[1])

    def sign(x):
        return torch.where(x >= 0, 1.0, -1.0)

    def expected(kernel):  # conv1 sees the real image; every other layer a binary input
        return (
            F.conv2d(image, kernel(conv1.weight)),
            F.conv2d(sign(hidden), kernel(conv2.weight), padding="same"),
            F.linear(sign(features), kernel(fc3.weight)),
        )

    def seen():
        with torch.no_grad():
            return conv1(image), conv2(hidden), fc3(features)

    for epoch, kernel, decay in ((0, lambda w: w, 1e-3), (1, lambda w: w, 1e-3), (2, sign, 0.0)):
        steps.begin_epoch(epoch)
        for got, want in zip(seen(), expected(kernel)):
            assert torch.allclose(got, want, atol=1e-5), epoch
        assert binary.param_groups[0]["weight_decay"] == decay


def test_step_two_starts_with_fresh_adam_moments():
    torch.manual_seed(0)
    model = BinaryNet(width=1 / 16)
    config = TrialConfig(optimizer="latent", epochs=3, two_step=1).resolved()
    binary, real = build_optimizers(config, model)
    steps = TwoStep(config, model, binary, real, initial_signs(model))
    steps.begin_epoch(0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    binary.step()
    real.step()
    assert binary.state and real.state
    steps.begin_epoch(1)  # the first epoch of step 2
    assert not binary.state and not real.state
    binary.step()
    steps.begin_epoch(2)  # later epochs keep step 2's moments
    assert int(binary.state[model.layers["fc3"].weight]["step"]) == 1


def test_step_two_starts_from_step_ones_best_epoch_not_its_last_and_measures_c2i_from_there():
    torch.manual_seed(0)
    model = BinaryNet(width=1 / 16)
    config = TrialConfig(optimizer="latent", epochs=5, two_step=3).resolved()
    binary, real = build_optimizers(config, model)
    initial = initial_signs(model)
    steps = TwoStep(config, model, binary, real, initial)

    def weights_of_epoch(epoch):  # a distinct model state per epoch, norm buffers included
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(epoch)))
        return {k: v.clone() for k, v in model.state_dict().items()}

    trained = {}
    for epoch, val in ((1, 0.30), (2, 0.55), (3, 0.40)):  # epoch 2 is step 1's best
        steps.begin_epoch(epoch - 1)
        trained[epoch] = weights_of_epoch(epoch)
        steps.end_epoch(epoch, val)
    kept = trained[2]
    assert steps.best_epoch == 2 and steps.best_val_acc == 0.55
    steps.begin_epoch(3)  # step 2
    for name, value in model.state_dict().items():
        assert torch.equal(value, kept[name]), name
    assert initial.c2i(model.binary_parameters())["c2i"] == 1.0  # measured from step 2's start
    assert steps.best_weights is None  # no longer carried in checkpoints
    steps.end_epoch(4, 0.9)  # step 2's epochs never replace step 1's best
    assert steps.best_epoch == 2


def test_two_step_training_clips_no_latent_weight_and_the_plain_arm_clips_them():
    w = torch.tensor([0.995, -0.995], requires_grad=True)
    w.grad = torch.tensor([-1.0, 1.0])
    plain = LatentAdam([w], lr=0.01)
    plain.step()
    assert w.detach().tolist() == [1.0, -1.0]
    u = torch.tensor([0.995, -0.995], requires_grad=True)
    u.grad = torch.tensor([-1.0, 1.0])
    unclipped = LatentAdam([u], lr=0.01, clip=None)
    unclipped.step()
    assert u.detach().tolist() == pytest.approx([1.005, -1.005])
    model = BinaryNet(width=1 / 16)
    config = TrialConfig(optimizer="latent", epochs=3, two_step=1).resolved()
    binary, real = build_optimizers(config, model)
    assert binary.clip == 1.0
    steps = TwoStep(config, model, binary, real, initial_signs(model))
    for epoch in range(3):
        steps.begin_epoch(epoch)
        assert binary.clip is None, epoch  # AdamBNN clips neither step


def test_best_counts_binary_weight_epochs_only_and_keeps_step_ones_best_apart():
    from bopsweep.trial.best import summarize

    history = [
        {"epoch": e, "val_acc": v, "train_acc": 0.5}
        for e, v in enumerate((0.6, 0.8, 0.5, 0.7, 0.65), start=1)
    ]
    two_step = summarize(history, 1.0, two_step=2)
    assert (two_step["best_epoch"], two_step["best_val_acc"]) == (4, 0.7)  # a step-2 epoch
    assert (two_step["step1_best_epoch"], two_step["step1_best_val_acc"]) == (2, 0.8)
    plain = summarize(history, 1.0)
    assert (plain["best_epoch"], plain["best_val_acc"]) == (2, 0.8)
    assert "step1_best_val_acc" not in plain


def test_a_two_step_run_restarts_its_lr_decay_and_steps_from_step_ones_best(
    small_cifar_dir, tmp_path
):
    config = recipe(small_cifar_dir, epochs=4, two_step=2)
    out = tmp_path / "run"

    class Stop(Exception):
        pass

    def stop_after_step_one(row, steps):
        if row["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        run_trial(config, out, on_epoch=stop_after_step_one)
    between = torch.load(out / "checkpoint.pt", weights_only=True)["two_step"]
    summary = run_trial(config, out, resume=True)
    rows = read_rows(out / "metrics.csv")
    step1 = rows[:2]
    best1 = max(step1, key=lambda r: r["val_acc"])  # the first on a tie, as AdamBNN's
    assert between["best_epoch"] == best1["epoch"] == summary["step1_best_epoch"]
    # step 2's C2I is measured from the weights it started from: step 1's best
    start = [between["weights"][f"layers.{n}.weight"] for n in ("conv1", "fc3")]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    initial = InitialSigns(
        BinaryNet(width=1 / 16).binary_layer_names,
        [torch.zeros(n) for n in state["initial_signs"]["numels"]],
    )
    initial.load_state_dict(state["initial_signs"])
    assert torch.equal(initial.signs[0], start[0].ge(0).flatten())
    assert torch.equal(initial.signs[-1], start[1].ge(0).flatten())
    assert "weights" not in state["two_step"]  # step 2's checkpoints no longer carry them
    # its own linear decay from lr0: step 2's epochs see step 1's values again
    lr = [r["lr"] for r in rows]
    assert lr[2] == pytest.approx(lr[0]) and lr[3] == pytest.approx(lr[1]) and lr[1] < lr[0]
    assert summary["best_epoch"] in (3, 4)  # a binary-weight epoch


def test_two_step_run_resumed_in_either_step_matches_the_uninterrupted_run(
    small_cifar_dir, tmp_path
):
    config = recipe(small_cifar_dir, epochs=4, two_step=2, log_every=3)
    run_trial(config, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after(epoch):
        def on_epoch(row, steps):
            if row["epoch"] == epoch:
                raise Stop

        return on_epoch

    part = tmp_path / "part"
    # stopped inside step 1, between the steps, and inside step 2; each time resumed
    for i, stop in enumerate((1, 2, 3)):
        with pytest.raises(Stop):
            run_trial(config, part, resume=i > 0, on_epoch=stop_after(stop))
    run_trial(config, part, resume=True)
    for name in ("metrics.csv", "steps.csv"):
        assert (tmp_path / "full" / name).read_text() == (part / name).read_text()
    state = torch.load(part / "checkpoint.pt", weights_only=True)
    assert state["binary_opt"]["param_groups"][0]["weight_decay"] == 0.0
    assert int(state["binary_opt"]["state"][0]["step"]) == 2 * 10  # step 2's two epochs


def test_schedules_reach_the_optimizers_after_a_resume(small_cifar_dir, tmp_path):
    """Loading a checkpoint gives the optimizers new param_groups: the schedules must set
    those (a resumed run once kept the checkpoint's values for the rest of the run)."""
    schedules = {"tau": Schedule(kind="exponential", rate=10, every=1), "lr": LINEAR_TO_ZERO}
    config = tiny(small_cifar_dir, epochs=3, schedules=schedules, log_every=5)
    run_trial(config, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop(row, steps):
        raise Stop

    with pytest.raises(Stop):
        run_trial(config, tmp_path / "part", on_epoch=stop)
    run_trial(config, tmp_path / "part", resume=True)
    for name in ("metrics.csv", "steps.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "part" / name).read_text()


@pytest.mark.slow
def test_a_two_step_latent_run_learns(cifar_dir):
    rows = []
    run_trial(recipe(cifar_dir, epochs=6, two_step=3), on_epoch=lambda row, steps: rows.append(row))
    val = [r["val_acc"] for r in rows]
    assert max(val[:3]) >= 0.5, val  # step 1, real kernels (chance is 0.1)
    assert val[-1] >= 0.5, val  # step 2, binary kernels: what the trial reports
    assert rows[-1]["lr"] < rows[0]["lr"] / 5  # the linear decay towards 0


# --- the linear learning-rate decay to 0 ---------------------------------------------------------
def test_a_linear_lr_decay_to_0_over_the_run_stays_positive_at_every_step():
    config = TrialConfig(optimizer="latent", epochs=4, schedules={"lr": LINEAR_TO_ZERO}).resolved()
    steps_per_epoch, total = 5, 20
    values = [
        config.schedules["lr"].value(config.lr, s, steps_per_epoch, config.epochs)
        for s in range(total)
    ]
    # AdamBNN's per-epoch LambdaLR 1 − e/epochs at each epoch's first step, linear between
    assert values[::steps_per_epoch] == pytest.approx([0.01 * (1 - e / 4) for e in range(4)])
    assert values[-1] == pytest.approx(0.01 / total) and min(values) > 0


# --- bad input: one line, exit 2 -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--optimizer", "bop", "--weight-decay", "1e-5"], "weight-decay is for the latent"),
        (["--optimizer", "bop2", "--two-step", "1"], "two-step is for the latent"),
        (["--optimizer", "latent", "--two-step", "3"], "two-step 3 must be less than epochs (3)"),
        (["--optimizer", "latent", "--two-step", "5"], "two-step 5 must be less than epochs (3)"),
        (["--optimizer", "latent", "--two-step", "0"], "two-step must be >= 1, got 0"),
        (["--optimizer", "latent", "--two-step", "-2"], "two-step must be >= 1, got -2"),
        (["--optimizer", "latent", "--weight-decay", "-1e-5"], "weight-decay must be >= 0"),
        (["--optimizer", "latent", "--weight-decay", "nan"], "weight-decay must be >= 0"),
        (
            ["--optimizer", "latent", "--schedule", "lr=polynomial(end=0, epochs=2)"],
            "lr leaves (0, inf) in epoch 3",
        ),
    ],
)
def test_bad_recipe_values_get_one_line_and_create_nothing(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = ["--data-dir", str(tmp_path / "absent"), "--epochs", "3"]  # refused before the data
    one_line_error(invoke(["train", *data, *TINY, *args]), fragment)
    assert list(tmp_path.iterdir()) == []


def test_the_recipe_round_trips_through_json_and_toml_and_is_type_checked(tmp_path):
    config = TrialConfig(optimizer="latent", weight_decay=5e-6, two_step=75, epochs=150)
    config.save(tmp_path / "config.json")
    assert TrialConfig.load(tmp_path / "config.json") == config
    study = tmp_path / "s.toml"
    study.write_text(
        '[study]\nkind = "arms"\n[base]\nepochs = 4\n'
        '[[arms]]\nlabel = "bop"\noptimizer = "bop"\n'
        '[[arms]]\nlabel = "adam"\noptimizer = "latent"\nweight_decay = 0\ntwo_step = "half"\n'
    )
    one_line_error(
        invoke(["run", str(study), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]),
        "two_step in arm",
    )
    text = study.read_text().replace('"half"', "2")
    study.write_text(text.replace('"bop"\n[[', '"bop"\nweight_decay = 1e-5\n[['))
    one_line_error(
        invoke(["run", str(study), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]),
        "weight-decay is for the latent optimizer's real kernels; bop",
    )
    assert not (tmp_path / "x.db").exists()


def test_configurations_without_the_recipe_keep_their_ids():
    """Trials and checkpoints of studies made before these settings existed are found again."""
    config = TrialConfig(optimizer="bop2", unbiased=True).resolved()
    before = {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("device", "data_dir", "download", "weight_decay", "two_step")
    }
    digest = hashlib.sha1(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert config_id(config) == digest
    latent = TrialConfig(optimizer="latent", epochs=4)
    assert config_id(latent) != config_id(TrialConfig(optimizer="latent", epochs=4, two_step=2))


def test_two_step_configurations_of_bopsweep_0_1_get_new_ids_as_their_recipe_changed():
    """0.1 ran step 2 from step 1's last epoch, clipped, with one lr decay over both steps: such
    a run is neither resumed as nor counted for a run of AdamBNN's recipe."""
    config = TrialConfig(optimizer="latent", epochs=4, two_step=2, weight_decay=5e-6).resolved()
    identity = {
        k: v for k, v in config.to_dict().items() if k not in ("device", "data_dir", "download")
    }
    as_in_0_2 = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    assert config_id(config) != as_in_0_2


def test_a_run_of_an_older_bopsweep_resumes_with_the_new_columns(small_cifar_dir, tmp_path):
    config = tiny(small_cifar_dir, optimizer="latent")
    run_trial(config, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop(row, steps):
        raise Stop

    old = tmp_path / "old"
    with pytest.raises(Stop):
        run_trial(config, old, on_epoch=stop)
    # as bopsweep before C2I left it: no c2i columns, no initial signs in the checkpoint
    frame = pd.read_csv(old / "metrics.csv")
    frame.drop(columns=[c for c in frame if c.startswith("c2i")]).to_csv(
        old / "metrics.csv", index=False
    )
    state = torch.load(old / "checkpoint.pt", weights_only=True)
    del state["initial_signs"]
    torch.save(state, old / "checkpoint.pt")
    run_trial(config, old, resume=True)
    rows, full = read_rows(old / "metrics.csv"), read_rows(tmp_path / "full" / "metrics.csv")
    assert rows[0]["c2i"] is None  # not logged then
    assert rows[1]["c2i"] == full[1]["c2i"]  # measured against the same start (same seed)
    assert rows[1]["val_acc"] == full[1]["val_acc"]


# --- status and figures --------------------------------------------------------------------------
def test_weights_figure_draws_ff_and_c2i_per_epoch_per_arm():
    def run(number, label, seed, c2i):
        epochs = pd.DataFrame(
            {"epoch": [1, 2], "flip_frac": [0.01, 0.001], "c2i": c2i, "c2i_fc3": [0.5, 0.5]}
        )
        epochs["flip_frac_fc3"] = [0.02, 0.0]
        config = {"optimizer": "latent", "seed": seed, "label": label}
        return Run(number, label, config, "COMPLETE", epochs, pd.DataFrame())

    spec = {"kind": "arms", "base": TrialConfig().to_dict(), "grid": {}, "arms": [{}]}
    data = StudyData(
        "s", spec, [run(0, "a", 0, [0.1, 0.2]), run(1, "a", 1, [0.3, 0.4]), run(2, "b", 0, [0, 0])]
    )
    fig = weights_figure(data, ["fc3"])
    ff, c2i, ff_fc3, c2i_fc3 = fig.axes[:4]
    lines = {line.get_label(): line for line in c2i.get_lines()}
    assert list(lines["a"].get_ydata()) == pytest.approx([0.2, 0.3])  # mean of the seeds
    assert ff.get_yscale() == "log" and "FF ratio" in ff.get_ylabel()
    assert "C2I" in c2i.get_ylabel() and "layer fc3" in c2i_fc3.get_title()
    assert list(ff_fc3.get_lines()[0].get_ydata()) == pytest.approx([0.02, 0.0])
    assert has_weight_metrics(data)
    before_c2i = Run(3, "c", {"seed": 0}, "COMPLETE", {"epoch": np.array([1])}, {})
    assert not has_weight_metrics(StudyData("s", spec, [before_c2i]))  # no weights figure


@pytest.mark.slow
def test_an_adam_vs_bop_study_runs_end_to_end(small_cifar_dir, tmp_path, monkeypatch):
    """studies/adam_vs_bop.toml in small: every arm, 2 epochs, through `bopsweep run`."""
    shipped = (Path(__file__).resolve().parent.parent / "studies" / "adam_vs_bop.toml").read_text()
    small = shipped.replace("epochs = 150", "epochs = 2").replace("two_step = 150", "two_step = 1")
    small = small.replace("seeds = 3", "seeds = 1").replace("epochs = 300", "epochs = 3")
    assert small.count("two_step = 1") == 1 and "epochs = 2" in small and "epochs = 3" in small
    (tmp_path / "small.toml").write_text(small)
    monkeypatch.chdir(tmp_path)
    data = ["--data-dir", str(small_cifar_dir), "--subset", "100", "--workers", "2"]
    result = invoke(["run", "small.toml", *data, *TINY, "--tensorboard", "tb"])
    assert result.exit_code == 0, result.output
    status = invoke(["status", "study.db"])
    assert status.exit_code == 0 and status.output.count("COMPLETE") == 5, status.output
    assert "c2i" in status.output
    exported = invoke(["export", "study.db", "--metrics", "-o", "m.csv"])
    assert exported.exit_code == 0, exported.output
    metrics = pd.read_csv(tmp_path / "m.csv")
    assert len(metrics) == 4 * 2 + 3 and metrics["c2i"].between(0, 1).all()
    assert {"flip_frac_fc3", "c2i_fc3"} <= set(metrics)
    recipe_rows = metrics[metrics["label"] == "latent Adam, AdamBNN recipe"]
    trials = invoke(["export", "study.db", "-o", "t.csv"])
    assert trials.exit_code == 0, trials.output
    recipe = pd.read_csv(tmp_path / "t.csv").set_index("label").loc["latent Adam, AdamBNN recipe"]
    assert recipe["best_epoch"] in (2, 3) and recipe["step1_best_epoch"] == 1  # kept apart
    step2 = recipe_rows[recipe_rows["epoch"] > 1]
    assert recipe["best_val_acc"] == step2["val_acc"].max()  # the binary network's best
    # what pruners and samplers judge, and TensorBoard's best: binary-weight epochs only
    stored = optuna.load_study(study_name="adam-vs-bop", storage="sqlite:///study.db")
    (trial,) = [t for t in stored.trials if t.user_attrs["label"] == recipe.name]
    assert trial.intermediate_values == dict(zip(step2["epoch"], step2["val_acc"], strict=True))
    (run,) = (tmp_path / "tb" / "adam-vs-bop").glob(f"{trial.number}-*")
    board = event_accumulator.EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    best = [(e.step, e.value) for e in board.Scalars("accuracy/val_best")]
    assert best[0][0] == 1 and math.isnan(best[0][1])  # step 1: no binary network yet
    running = step2["val_acc"].cummax().tolist()
    assert [s for s, _ in best[1:]] == [2, 3]
    assert [v for _, v in best[1:]] == pytest.approx(running, abs=1e-6)  # 32-bit scalars
    lr = recipe_rows["lr"].tolist()  # at each epoch's last batch: step 2 decays from lr0 again
    assert lr[1] > lr[0] and lr[2] < lr[1] and max(lr) < 1e-3
    drawn = invoke(["plot", "study.db", "--out", "figs", "--layer", "last"])
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "figs" / "adam-vs-bop" / "weights.png").exists()
