"""Stacked trials: trials per hour of K configurations trained as one stack (``--stack K``)
against the same K trained one after the other, at widths 1/8 and 1/4.

Each arm trains the same K configurations (Bop2ndOrder at K values of γ, one seed, one data
order) for the same epochs on the same generated CIFAR-format data, in this process, through
bopsweep's own :func:`~bopsweep.trial.train.run_stack` and :func:`~bopsweep.trial.train.run_trial`:

* ``separate``: K calls of ``run_trial`` (each loads its data, builds its model, evaluates);
* ``stacked``: one ``run_stack`` whose members run their own layers on the shared batch (the
  CPU's default);
* ``grouped``: one ``run_stack`` with grouped layers, one kernel per layer for all members
  (a GPU's default).

Process start-up is left out there; the second part runs tiny trials through the whole
driver (real trial processes, warm starts, a SQLite database), ``--stack K`` against
``--stack 1``, where a stack also saves K - 1 process starts and data loads.

Arms alternate within each round; the figure is the median over rounds, the ratio
trials/hour(arm) / trials/hour(separate).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.dispatch import trials_per_minute
from bopsweep.studies import TrialConfig
from bopsweep.trial.cifar_files import make_synthetic
from bopsweep.trial.train import run_stack, run_trial

ARMS = ("separate", "stacked", "grouped")


def run(
    widths: tuple[float, ...] = (1 / 8, 1 / 4),
    k: int = 4,
    n_train: int = 1000,
    epochs: int = 1,
    rounds: int = 3,
    device: str = "cpu",
    driver_trials: int = 8,
) -> dict:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_synthetic(folder / "data", n_train=n_train, n_test=n_train // 5).parent
        for width in widths:
            configs = [
                TrialConfig(
                    optimizer="bop2",
                    gamma=10.0 ** -(2 + i),
                    width=width,
                    epochs=epochs,
                    batch_size=100,
                    data_dir=str(data),
                    device=device,
                )
                for i in range(k)
            ]
            samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
            for r in range(rounds + 1):  # round 0 warms up (allocator, oneDNN primitives)
                for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                    start = time.perf_counter()
                    if arm == "separate":
                        for config in configs:
                            run_trial(config)
                    else:
                        run_stack(configs, [None] * k, grouped=arm == "grouped")
                    if r > 0:
                        samples[arm].append(k * 3600 / (time.perf_counter() - start))
            per_hour = {arm: statistics.median(s) for arm, s in samples.items()}
            ratios = {arm: per_hour[arm] / per_hour["separate"] for arm in ARMS}
            results[f"width {width:g}"] = {"trials_per_hour": per_hour, "ratio": ratios}
            print(
                f"\nstack, width {width:g}, {k} Bop2ndOrder trials of {epochs} epoch(s) over "
                f"{n_train} images (batch 100), {device}, median of {rounds} rounds"
            )
            for arm in ARMS:
                print(f"  {arm:<9} {per_hour[arm]:8.0f} trials/hour   ratio {ratios[arm]:5.2f}")
        results["driver"] = _through_the_driver(folder, k, rounds, driver_trials)
    return results


def _through_the_driver(folder: Path, k: int, rounds: int, n_trials: int = 8) -> dict:
    data = make_synthetic(folder / "tiny", n_train=200, n_test=50).parent
    samples: dict[int, list[float]] = {1: [], k: []}
    for r in range(rounds):
        for stack in (1, k) if r % 2 == 0 else (k, 1):
            tpm = trials_per_minute(f"stack{stack}-{r}", data, folder, n_trials, 3, stack=stack)
            samples[stack].append(tpm * 60)
    per_hour = {stack: statistics.median(s) for stack, s in samples.items()}
    ratio = per_hour[k] / per_hour[1]
    print(
        f"\nstack through the driver, {n_trials} tiny trials (3 epochs, width 1/16, 200 images), "
        f"1 cpu worker, warm starts, median of {rounds} rounds"
    )
    for stack, value in per_hour.items():
        print(f"  --stack {stack}: {value:8.0f} trials/hour")
    print(f"  ratio --stack {k} / --stack 1: {ratio:.2f}")
    return {"trials_per_hour": per_hour, "ratio": ratio}


if __name__ == "__main__":
    run()
