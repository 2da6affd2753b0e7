"""Stacked trials: K configurations trained as one network compute what their separate runs do.

Member by member (the CPU's default) a stack runs each member's own layers on the shared
batch, so its files equal the separate runs' byte for byte. Grouped (a GPU's default, checked
here on the CPU) sums in another order: its flips equal the separate runs' through the first
epoch, and its curves stay within the seed-to-seed spread after (see
``test_grouped_stack_flips_as_the_separate_runs``).
"""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F

from bopsweep.errors import UserError
from bopsweep.models import BinaryNet, StackedBinaryNet
from bopsweep.studies import TrialConfig
from bopsweep.trial.run_dir import read_rows
from bopsweep.trial.train import TrialDiverged, run_stack, run_trial
from tests.helpers import (
    assert_one_complete_per_configuration,
    bopsweep,
    epochs_in,
    grid_args,
    run_dirs,
    start,
    trial_processes,
    trials,
    wait_until,
)

ARMS = [
    {"optimizer": "bop", "gamma": 1e-2, "tau": 1e-5},
    {"optimizer": "bop2"},
    {"optimizer": "latent"},
]


def arm(data_dir, index: int, **overrides) -> TrialConfig:
    values = {"width": 1 / 16, "device": "cpu", "data_dir": str(data_dir), "epochs": 2}
    return TrialConfig(**{**values, "batch_size": 20, "log_every": 1, **ARMS[index], **overrides})


def reproducible(run_dir) -> dict[str, bytes]:
    """The files a run must reproduce (timing.csv and summary.json hold wall-clock seconds)."""
    return {n: (run_dir / n).read_bytes() for n in ("metrics.csv", "steps.csv")}


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_stacked_forward_and_gradients_are_each_members_own(norm, grouped):
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        # member 1 binarises its kernels in the forward pass (the latent baseline), 0 and 2 not
        net = BinaryNet(1 / 16, norm, quantize_kernels=seed == 1)
        members.append(net.to(memory_format=torch.channels_last))
    alone = [copy.deepcopy(m) for m in members]
    x = torch.randn(20, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (20,))

    logits = StackedBinaryNet(members, grouped=grouped)(x)
    sum(F.cross_entropy(out, y) for out in logits).backward()

    assert [out.shape for out in logits] == [(20, 10)] * 3
    for k, own in enumerate(alone):
        expected = own(x)
        F.cross_entropy(expected, y).backward()
        assert torch.equal(logits[k], expected)  # channel-separable: the very same numbers
        for p, q in zip(members[k].parameters(), own.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None
            if grouped:  # summed in another order
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(p.grad, q.grad)
        for b, c in zip(members[k].buffers(), own.buffers(), strict=True):
            torch.testing.assert_close(b, c)  # batch-norm running statistics written back


def test_a_member_by_member_stack_writes_the_separate_runs_files(small_cifar_dir, tmp_path):
    configs = [arm(small_cifar_dir, k) for k in range(3)]
    ends = run_stack(configs, [tmp_path / f"stack{k}" for k in range(3)], grouped=False)
    for k, config in enumerate(configs):
        separate = run_trial(config, tmp_path / f"alone{k}")
        end = ends[k]
        assert isinstance(end, dict) and end["final_val_acc"] == separate["final_val_acc"]
        stacked, alone = tmp_path / f"stack{k}", tmp_path / f"alone{k}"
        assert reproducible(stacked) == reproducible(alone)
        # the checkpoint is a plain trial's: the separate run resumes it
        assert run_trial(config, stacked, resume=True)["epochs"] == 2


@pytest.mark.slow
def test_grouped_stack_flips_as_the_separate_runs(cifar_dir, tmp_path):
    """Grouped layers sum in another order (gradients agree to ~1e-7): every step's flips are
    the separate run's through epoch 1 (50 steps, log_every=1). A flip decision with |m| within
    rounding of τ then separates the trajectories, as the nondeterministic kernels of a GPU
    separate two runs of one seed. Their validation accuracy after 3 epochs of this tiny study
    differs by up to 0.09 (stacked vs separate), far within the spread over 4 seeds of the same
    arm (0.4–0.7 between the best and worst seed; measured with these settings), so curves are
    held to 0.15 per epoch."""
    configs = [arm(cifar_dir, k, epochs=3) for k in range(3)]
    run_stack(configs, [tmp_path / f"stack{k}" for k in range(3)], grouped=True)
    for k, config in enumerate(configs):
        run_trial(config, tmp_path / f"alone{k}")
        stacked = read_rows(tmp_path / f"stack{k}" / "steps.csv")
        alone = read_rows(tmp_path / f"alone{k}" / "steps.csv")
        first_epoch = [r for r in alone if r["epoch"] == 1]
        assert len(first_epoch) == 50
        assert stacked[:50] == first_epoch  # π and the flip fraction of every layer, every step
        curves = [
            [r["val_acc"] for r in read_rows(tmp_path / name / "metrics.csv")]
            for name in (f"stack{k}", f"alone{k}")
        ]
        assert curves[0][0] == curves[1][0]
        assert all(abs(a - b) <= 0.15 for a, b in zip(*curves, strict=True)), curves


def test_members_resumed_at_different_epochs_catch_up(small_cifar_dir, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_one(row, steps):
        raise Stop

    configs = [arm(small_cifar_dir, k, epochs=3) for k in range(2)]
    with pytest.raises(Stop):  # member 0 has one epoch done, member 1 none
        run_trial(configs[0], tmp_path / "stack0", on_epoch=stop_after_one)
    trained: list[tuple[int, int]] = []
    run_stack(
        configs,
        [tmp_path / "stack0", tmp_path / "stack1"],
        resume=[True, False],
        grouped=False,
        on_epoch=lambda k, row, steps: trained.append((k, row["epoch"])),
    )
    # member 1 trains alone until it reaches member 0, then both go on together
    assert trained == [(1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]
    for k, config in enumerate(configs):
        run_trial(config, tmp_path / f"alone{k}")
        assert reproducible(tmp_path / f"stack{k}") == reproducible(tmp_path / f"alone{k}")


def test_a_diverging_member_ends_alone(small_cifar_dir, tmp_path):
    # Adam at lr 1e37 drives the norm shifts past float32's range within an epoch
    configs = [arm(small_cifar_dir, 0), arm(small_cifar_dir, 2, lr=1e37, batch_size=20)]
    ended: dict[int, object] = {}
    ends = run_stack(
        configs,
        [tmp_path / "ok", tmp_path / "nan"],
        grouped=True,
        on_end=lambda k, end: ended.setdefault(k, end),
    )
    assert isinstance(ends[1], TrialDiverged) and ended[1] is ends[1]
    assert not (tmp_path / "nan" / "checkpoint.pt").exists()
    assert isinstance(ends[0], dict) and ends[0]["epochs"] == 2 and ended[0] is ends[0]
    run_trial(configs[0], tmp_path / "alone")  # the survivor is untouched by its neighbour
    first = read_rows(tmp_path / "ok" / "steps.csv")
    assert first[:10] == read_rows(tmp_path / "alone" / "steps.csv")[:10]


def test_a_stopped_member_is_dropped_after_its_epoch(small_cifar_dir, tmp_path):
    configs = [arm(small_cifar_dir, k, epochs=3) for k in range(2)]
    ends = run_stack(configs, [tmp_path / "a", tmp_path / "b"], stopped=lambda k: k == 1)
    assert ends[1] is None and len(read_rows(tmp_path / "b" / "metrics.csv")) == 1
    assert isinstance(ends[0], dict) and ends[0]["epochs"] == 3


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"seed": 1}, "stacked trials must share seed"),
        ({"width": 1 / 8, "batch_size": 10}, "must share batch_size, width"),
        ({"compile": True}, "--compile applies to a lone trial"),
    ],
)
def test_a_stack_that_cannot_share_is_refused_before_any_folder(
    small_cifar_dir, tmp_path, other, message
):
    configs = [arm(small_cifar_dir, 0), arm(small_cifar_dir, 1, **other)]
    with pytest.raises(UserError, match=message):
        run_stack(configs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- stacked trials in a study: the driver -------------------------------------------------------


def stacked_grid(data, epochs: int, stack: int) -> list[str]:
    return [*grid_args("gamma", "1e-7,1e-6,1e-5", epochs, data, workers=1), "--stack", str(stack)]


def by_gamma(ts) -> dict[float, optuna.trial.FrozenTrial]:
    return {t.params["gamma"]: t for t in ts if t.state.name == "COMPLETE"}


def test_a_stacked_grid_gives_each_configuration_its_own_trial_as_run_alone(
    small_cifar_dir, tmp_path
):
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    for cwd, stack in ((stacked, 3), (alone, 1)):
        cwd.mkdir()
        # started cold here; the stacks of the tests below are forked from the zygote
        cold = ["--cold-starts"] if stack > 1 else []
        result = bopsweep(*stacked_grid(small_cifar_dir, 2, stack), *cold, cwd=cwd)
        assert result.returncode == 0, result.stderr
    ts = trials(stacked, "grid-gamma")
    assert_one_complete_per_configuration(ts, 3, 2, stacked)
    assert {t.user_attrs["slot"] for t in ts} == {"cpu0"}
    twins = by_gamma(trials(alone, "grid-gamma"))
    for gamma, t in by_gamma(ts).items():  # on the CPU a stack computes what separate runs do
        assert t.value == twins[gamma].value
        assert t.intermediate_values == twins[gamma].intermediate_values
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == t.user_attrs["config_id"]
        assert (run_dir / "checkpoint.pt").exists() and epochs_in(run_dir) == 2


@pytest.mark.slow
def test_a_killed_stack_is_retried_member_by_member_from_their_checkpoints(
    small_cifar_dir, tmp_path
):
    epochs = 12
    driver = start(*stacked_grid(small_cifar_dir, epochs, 3), cwd=tmp_path)
    wait_until(
        lambda: (
            all(epochs_in(d) >= 3 for d in run_dirs(tmp_path, "grid-gamma"))
            and len(run_dirs(tmp_path, "grid-gamma")) == 3
        ),
        what="the stack mid-run",
    )
    (victim,) = trial_processes(driver.pid)  # one process for the three trials
    os.kill(victim, signal.SIGKILL)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert err.count("FAILED (killed by SIGKILL); re-queued") == 3
    ts = trials(tmp_path, "grid-gamma")
    assert_one_complete_per_configuration(ts, 3, epochs, tmp_path)
    crashed = [t for t in ts if t.state.name == "FAIL"]
    assert len(crashed) == 3 and {t.user_attrs["failure"] for t in crashed} == {"crash"}
    for t in by_gamma(ts).values():
        assert t.user_attrs["attempt"] == 1 and t.user_attrs["resumed_from_epoch"] >= 2


@pytest.mark.slow
def test_a_stacked_search_prunes_members_while_their_stack_goes_on(small_cifar_dir, tmp_path):
    # the norm fixed: every sampled trial can join a stack
    args = ["optuna", "--trials", "9", "--sampler-seed", "0", "--pruner", "median", "--fix"]
    args += ["norm=batch", "--stack", "3", "--workers", "1", "--epochs", "6"]
    args += ["--data-dir", str(small_cifar_dir), "--width", "0.0625", "--batch-size", "20"]
    result = bopsweep(*args, "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ts = trials(tmp_path, "optuna-search")
    assert len(ts) == 9 and {t.state.name for t in ts} == {"COMPLETE", "PRUNED"}
    for t in ts:
        curve = sorted(t.intermediate_values)
        if t.state.name == "PRUNED":  # stopped after its epoch in progress, its curve kept
            assert t.user_attrs["pruned_at_epoch"] in curve and curve[-1] < 6
        else:
            assert curve == list(range(1, 7))
