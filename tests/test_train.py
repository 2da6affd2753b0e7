"""One trial end to end on generated CIFAR-format data at a tiny width, on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from bopsweep.errors import UserError
from bopsweep.studies import TrialConfig
from bopsweep.trial.run_dir import read_rows
from bopsweep.trial.schedules import Schedule
from bopsweep.trial.train import TrialDiverged, run_trial

TINY = {"width": 1 / 16, "device": "cpu"}


def tiny(data_dir, **overrides) -> TrialConfig:
    values = {**TINY, "data_dir": str(data_dir), "epochs": 2, "batch_size": 20, **overrides}
    return TrialConfig(**values)


LEARNERS = {
    "bop": {"optimizer": "bop", "gamma": 1e-2, "tau": 1e-5},
    "bop2-biased": {"optimizer": "bop2"},
    "bop2-unbiased": {"optimizer": "bop2", "unbiased": True, "gamma": 1e-4, "tau": 1e-3},
    "latent": {"optimizer": "latent"},
}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_validation_accuracy_rises_well_above_chance(cifar_dir, name):
    rows = []
    summary = run_trial(
        tiny(cifar_dir, epochs=6, **LEARNERS[name]), on_epoch=lambda row, steps: rows.append(row)
    )
    val = [r["val_acc"] for r in rows]
    train = [r["train_acc"] for r in rows]
    assert len(rows) == 6
    assert max(val) >= 0.5, val  # chance is 0.1
    assert train[-1] > train[0] + 0.2, train
    assert summary["best_val_acc"] == max(val) and summary["final_val_acc"] == val[-1]


def test_same_seed_twice_gives_identical_metrics(small_cifar_dir, tmp_path):
    config = tiny(small_cifar_dir, log_every=3)
    run_trial(config, tmp_path / "a")
    run_trial(config, tmp_path / "b")
    for name in ("metrics.csv", "steps.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    run_trial(tiny(small_cifar_dir, log_every=3, seed=1), tmp_path / "c")
    other_seed = (tmp_path / "c" / "metrics.csv").read_bytes()
    assert (tmp_path / "a" / "metrics.csv").read_bytes() != other_seed


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(small_cifar_dir, tmp_path):
    full = tiny(small_cifar_dir, epochs=3, log_every=4)
    run_trial(full, tmp_path / "full")
    part = tiny(small_cifar_dir, epochs=1, log_every=4)
    run_trial(part, tmp_path / "part")
    assert len(read_rows(tmp_path / "part" / "metrics.csv")) == 1
    summary = run_trial(full, tmp_path / "part", resume=True)
    assert summary["epochs"] == 3
    for name in ("metrics.csv", "steps.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "part" / name).read_text()


def test_resume_drops_rows_written_after_the_last_checkpoint(small_cifar_dir, tmp_path):
    config = tiny(small_cifar_dir, epochs=2)
    run_trial(config, tmp_path / "full")
    run_trial(tiny(small_cifar_dir, epochs=1), tmp_path / "cut")
    # a crash between the rows of epoch 2 and its checkpoint leaves an extra row behind
    metrics = tmp_path / "cut" / "metrics.csv"
    rows = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*rows, rows[-1].replace("1,", "2,", 1)]) + "\n")
    run_trial(config, tmp_path / "cut", resume=True)
    assert metrics.read_text() == (tmp_path / "full" / "metrics.csv").read_text()


def test_a_folder_holding_a_run_is_not_overwritten(small_cifar_dir, tmp_path):
    run_trial(tiny(small_cifar_dir, epochs=1), tmp_path / "run")
    with pytest.raises(UserError, match=r"already holds a run.*--resume"):
        run_trial(tiny(small_cifar_dir, epochs=1), tmp_path / "run")


def test_checkpoint_holds_binary_kernels_and_loads_weights_only(small_cifar_dir, tmp_path):
    run_trial(tiny(small_cifar_dir, epochs=1, optimizer="bop", gamma=1e-3), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 10
    kernels = [v for k, v in state["model"].items() if k.startswith("layers.")]
    assert len(kernels) == 9
    assert all(set(k.unique().tolist()) <= {-1.0, 1.0} for k in kernels)
    assert set(state["binary_opt"]["state"][0]) == {"step", "m"}


def test_scheduled_values_in_force_are_recorded_per_epoch(small_cifar_dir, tmp_path):
    config = tiny(
        small_cifar_dir,
        epochs=3,
        schedules={
            "tau": Schedule(kind="exponential", rate=10, every=1),
            "lr": Schedule(kind="polynomial", end=0.001, epochs=3),
        },
    )
    run_trial(config, tmp_path)
    rows = read_rows(tmp_path / "metrics.csv")
    assert [r["tau"] for r in rows] == pytest.approx([1e-6, 1e-5, 1e-4])
    # the lr in force at each epoch's last step (steps 9, 19, 29 of 30)
    assert [r["lr"] for r in rows] == pytest.approx(
        [0.001 + 0.009 * (1 - s / 30) for s in (9, 19, 29)]
    )
    assert [r["gamma"] for r in rows] == [1e-7] * 3 and [r["sigma"] for r in rows] == [1e-3] * 3


def test_flip_metric_per_step_and_per_epoch(small_cifar_dir, tmp_path):
    run_trial(tiny(small_cifar_dir, epochs=2, log_every=1, init="sign"), tmp_path)
    steps = read_rows(tmp_path / "steps.csv")
    epochs = read_rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in steps] == list(range(1, 21))
    assert [r["epoch"] for r in steps] == [1] * 10 + [2] * 10
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3"]
    for r in steps:  # one step per row: π is the log of that step's flip fraction
        assert r["pi"] == pytest.approx(math.log(r["flip_frac"] + math.exp(-9)), rel=1e-5)
        for layer in layers:
            frac = r[f"flip_frac_{layer}"]
            assert r[f"pi_{layer}"] == pytest.approx(math.log(frac + math.exp(-9)), rel=1e-5)
    # ±1 start, biased step 1: s = γ/√σ·sign(g) = 3.2e-6 > τ, so weights agreeing with g flip
    assert 0.3 < steps[0]["flip_frac"] < 0.7
    for epoch in epochs:  # the epoch's π is the mean of its per-step π
        mine = [r for r in steps if r["epoch"] == epoch["epoch"]]
        assert epoch["pi"] == pytest.approx(sum(r["pi"] for r in mine) / len(mine), rel=1e-5)
        assert epoch["flip_frac"] == pytest.approx(sum(r["flip_frac"] for r in mine) / len(mine))


def test_windows_of_log_every_steps_restart_at_each_epoch(small_cifar_dir, tmp_path):
    run_trial(tiny(small_cifar_dir, epochs=2, log_every=4), tmp_path)
    steps = read_rows(tmp_path / "steps.csv")
    assert [(r["epoch"], r["step"], r["steps"]) for r in steps] == [
        (1, 4, 4),
        (1, 8, 4),
        (1, 10, 2),
        (2, 14, 4),
        (2, 18, 4),
        (2, 20, 2),
    ]


def test_a_diverging_loss_stops_the_trial_with_its_reason(small_cifar_dir, tmp_path):
    # Adam at lr 1e37 drives the norm shifts past float32's range within an epoch
    config = tiny(small_cifar_dir, epochs=3, batch_size=10, lr=1e37)
    with pytest.raises(TrialDiverged, match=r"training loss became (nan|inf) in epoch 1"):
        run_trial(config, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing diverged is saved


@pytest.mark.slow
def test_a_compiled_trial_trains_and_checkpoints_the_plain_model(small_cifar_dir, tmp_path):
    summary = run_trial(tiny(small_cifar_dir, epochs=2, compile=True), tmp_path)
    assert summary["epochs"] == 2 and 0 <= summary["final_val_acc"] <= 1
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    assert len(read_rows(tmp_path / "metrics.csv")) == 2
