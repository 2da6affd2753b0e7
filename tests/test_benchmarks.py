"""Every benchmark runs once at a tiny size (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import scale


@pytest.mark.slow
def test_the_benchmark_suite_runs_and_writes_its_summary(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(out.read_text())
    expected = {
        "optimizer_step",
        "train_step",
        "data_epoch",
        "dispatch",
        "warm_start",
        "cli_startup",
        "search",
        "plots",
        "scale",
    }
    assert expected <= set(summary)
    assert summary["optimizer_step"]["Adam(foreach=True)"]["ratio"] == 1.0
    assert summary["dispatch"]["ratio"] > 0
    assert summary["warm_start"]["ratio"] > 0
    assert set(summary["scale"]["growth"]) == set(scale.STAGES)
    driver = summary["scale"]["driver"]
    assert set(driver["sizes"]) == {"20", "40"}  # JSON keys
    assert all(size["driver_cpu_per_trial"] > 0 for size in driver["sizes"].values())
    assert driver["workers"]["ratio"] > 0
