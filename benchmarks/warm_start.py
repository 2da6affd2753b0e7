"""Warm starts: trials per minute with one CPU worker on tiny trials, each trial process forked
from a zygote that has imported torch and loaded the data (the default) against started from
scratch (``--cold-starts``).

Both run the same grid of tiny trials (real trial processes, a real SQLite database, the
driver's whole loop) in the same run, alternating cold and warm studies round by round so that
drifts in machine load hit both alike; the figure is the median over the rounds. The ratio is
throughput(warm) / throughput(cold).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.dispatch import trials_per_minute
from bopsweep.trial.cifar_files import make_synthetic


def run(n_trials: int = 8, epochs: int = 3, rounds: int = 3) -> dict:
    samples: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_synthetic(folder / "data", n_train=200, n_test=50).parent
        for r in range(rounds):
            order = ("cold", "warm") if r % 2 == 0 else ("warm", "cold")
            for mode in order:
                tpm = trials_per_minute(
                    f"{mode}{r}", data, folder, n_trials, epochs, warm_starts=mode == "warm"
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
