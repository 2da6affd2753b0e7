"""Where trials run: ``--gpus`` indexes into the GPUs the driver was given (an inherited
``CUDA_VISIBLE_DEVICES``), the inherited ``CUDA_DEVICE_ORDER`` is kept, GPU options are refused
on the CPU, and no more trial processes start at once than the machine holds unless asked.

No GPU here: the GPUs are simulated by the inherited variables and the count CUDA would report
under them (``_visible_gpu_count``, torch's NVML count, which honours the variable).
"""

from __future__ import annotations

import time

import pytest

from bopsweep.driver import process
from bopsweep.driver.environ import child_environ
from bopsweep.driver.process import make_slots, slot_capacity
from bopsweep.errors import UserError
from tests.helpers import invoke, one_line_error


@pytest.fixture
def gpus(monkeypatch):
    """Simulate ``n`` GPUs visible to the driver under ``CUDA_VISIBLE_DEVICES=visible``."""

    def given(visible: str | None, n: int | None = None) -> None:
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        count = n if n is not None else len(visible.split(",")) if visible else 0
        monkeypatch.setattr(process, "_visible_gpu_count", lambda: count)

    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    return given


def _devices(slots) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.env["CUDA_VISIBLE_DEVICES"] for s in slots]


def test_gpus_index_into_the_inherited_cuda_visible_devices(gpus):
    gpus("2,3")
    assert _devices(make_slots("auto")) == ["2", "3"]  # not 0 and 1: the GPUs left alone
    assert _devices(make_slots("auto", [1])) == ["3"]
    assert _devices(make_slots("cuda", [0], per_gpu=2)) == ["2", "2"]


def test_gpu_uuids_and_mig_instances_are_passed_on_as_given(gpus):
    uuid = "GPU-8f6c1c9e-3b0a-4c55-9a3e-2f1d0e4b7a11"
    mig = "MIG-4b6e2c1a-7d3f-5e8b-9c0a-1f2e3d4c5b6a"
    gpus(f"{uuid},{mig}")
    assert _devices(make_slots("auto")) == [uuid, mig]
    assert _devices(make_slots("auto", [1])) == [mig]


def test_an_index_beyond_the_visible_gpus_is_refused(gpus):
    gpus("2,3")
    result = invoke(["grid", "--param", "gamma", "--values", "1e-8", "--gpus", "2",
                                 "--dry-run"])  # fmt: skip
    one_line_error(result, "CUDA_VISIBLE_DEVICES=2,3")
    assert "indices 0 to 1" in result.output


def test_the_inherited_device_order_is_kept(gpus, monkeypatch):
    gpus("1,0")
    slot = make_slots("auto")[0]
    assert child_environ(slot.env)["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # nothing set: nvidia-smi's
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    slot = make_slots("auto")[0]
    assert child_environ(slot.env)["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


@pytest.mark.parametrize("option", [["--gpus", "0"], ["--per-gpu", "2"], ["--per-gpu", "1"]])
def test_gpu_options_with_device_cpu_are_refused(gpus, option):
    gpus("0,1")
    args = ["grid", "--param", "gamma", "--values", "1e-8", "--device", "cpu", *option]
    one_line_error(invoke([*args, "--dry-run"]), "--device cpu")


def test_workers_beyond_the_machine_are_refused_unless_allowed(tmp_path, small_cifar_dir):
    cap = slot_capacity()
    args = ["grid", "--param", "gamma", "--values", "1e-8", "--device", "cpu", "--dry-run"]
    args += ["--storage", f"sqlite:///{tmp_path / 's.db'}", "--data-dir", str(small_cifar_dir)]
    result = invoke([*args, "--workers", str(cap + 1)])
    one_line_error(result, f"this machine holds {cap}")
    assert "--allow-oversubscribe" in result.output
    assert invoke([*args, "--workers", str(cap)]).exit_code == 0
    allowed = invoke([*args, "--workers", str(cap + 1), "--allow-oversubscribe"])
    assert allowed.exit_code == 0, allowed.output


def test_gpu_slots_beyond_the_machine_are_refused(gpus):
    gpus("0,1")
    cap = slot_capacity()
    with pytest.raises(UserError, match=r"--per-gpu asks for .* --allow-oversubscribe"):
        make_slots("auto", per_gpu=cap)  # 2 × cap
    assert len(make_slots("auto", per_gpu=cap, oversubscribe=True)) == 2 * cap


def test_a_dry_run_of_ten_million_workers_answers_at_once(tmp_path, small_cifar_dir):
    args = ["grid", "--param", "gamma", "--values", "1e-8", "--device", "cpu", "--dry-run"]
    args += ["--storage", f"sqlite:///{tmp_path / 's.db'}", "--data-dir", str(small_cifar_dir)]
    invoke([*args, "--workers", "1"])  # imports done: the time below is the run's
    began = time.monotonic()
    result = invoke([*args, "--workers", "10000000", "--allow-oversubscribe"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began < 2
    assert "(10000000 slots)" in result.output and len(result.output) < 5000
