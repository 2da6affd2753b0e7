"""Warm starts: trials per minute with one CPU worker on tiny trials, each trial process forked
from a zygote that has imported torch and loaded the data (the default) against started from
scratch (``--cold-starts``).

Both run the same grid of tiny trials (real trial processes, a real SQLite database, the
driver's whole loop) in the same run, alternating cold and warm studies round by round so that
drifts in machine load hit both alike; the figure is the median over the rounds. The ratio is
throughput(warm) / throughput(cold).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from bopsweep.data import make_synthetic
from bopsweep.driver import DispatchOptions, run_study
from bopsweep.studies import TrialConfig, grid_study


def trials_per_minute(
    warm: bool, name: str, data: Path, folder: Path, n_trials: int, epochs: int
) -> float:
    base = TrialConfig(width=1 / 16, batch_size=20, epochs=epochs, data_dir=str(data), device="cpu")
    values = [10.0 ** (-9 + i * 4 / max(1, n_trials - 1)) for i in range(n_trials)]
    spec = grid_study(name, base, {"gamma": values})
    options = DispatchOptions(
        storage=f"sqlite:///{folder / f'{name}.db'}",
        device="cpu",
        workers=1,
        quiet=True,
        warm_starts=warm,
    )
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # the study's log
        code = run_study(spec, options, echo=lambda *_: None)
    seconds = time.perf_counter() - start
    assert code == 0, f"the benchmark study failed (exit {code})"
    return n_trials / seconds * 60


def run(n_trials: int = 8, epochs: int = 3, rounds: int = 3) -> dict:
    samples: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_synthetic(folder / "data", n_train=200, n_test=50).parent
        for r in range(rounds):
            order = ("cold", "warm") if r % 2 == 0 else ("warm", "cold")
            for mode in order:
                tpm = trials_per_minute(
                    mode == "warm", f"{mode}{r}", data, folder, n_trials, epochs
                )
                samples[mode].append(tpm)
    results = {mode: statistics.median(s) for mode, s in samples.items()}
    ratio = results["warm"] / results["cold"]
    print(
        f"\nwarm_start, {n_trials} tiny trials ({epochs} epochs, width 1/16, 200 images), "
        f"1 cpu worker, median of {rounds} rounds"
    )
    for mode, tpm in results.items():
        runs = ", ".join(f"{x:.1f}" for x in samples[mode])
        print(f"  {mode} starts: {tpm:6.1f} trials/min  ({runs})")
    print(f"  ratio warm / cold: {ratio:.2f}")
    return {"trials_per_minute": results, "samples": samples, "ratio": ratio}


if __name__ == "__main__":
    run()
