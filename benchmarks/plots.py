"""Plotting a large study: 100 trials × 100 epochs (metrics inserted directly, no training).

Reports the seconds of ``bopsweep plot`` end to end (a fresh process, imports included), and
for scale, the seconds of reading the same study back without drawing, in the same run.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bopsweep.driver.queue import TrialQueue
from bopsweep.plots import LAYERS, load_study_data
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.studies import TrialConfig, expand, grid_study

EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 100, 500, 10


def fake_metrics(rng: np.random.Generator, epochs: int) -> tuple[list[dict], dict[int, list[dict]]]:
    rows, steps = [], {}
    for e in range(1, epochs + 1):
        acc = 0.9 * (1 - math.exp(-e / 20)) + rng.normal(0, 0.01)
        pis = {f"pi_{n}": -9 + 8 * math.exp(-e / 10) for n in LAYERS}
        fracs = {f"flip_frac_{n}": math.exp(p) for n, p in zip(LAYERS, pis.values())}
        rows.append(
            {
                "epoch": e,
                "step": e * STEPS_PER_EPOCH,
                "train_loss": 1 - acc,
                "train_acc": acc + 0.02,
                "val_loss": 1.1 - acc,
                "val_acc": acc,
                "gamma": 1e-7,
                "sigma": 1e-3,
                "tau": 1e-6,
                "lr": 0.01,
                "pi": -9 + 8 * math.exp(-e / 10),
                "flip_frac": 0.01,
                **pis,
                **fracs,
            }
        )
        steps[e] = [
            {
                "epoch": e,
                "step": (e - 1) * STEPS_PER_EPOCH + s,
                "steps": LOG_EVERY,
                "pi": -9 + 8 * math.exp(-(e - 1 + s / STEPS_PER_EPOCH) / 10),
                "flip_frac": 0.01,
                **pis,
                **fracs,
            }
            for s in range(LOG_EVERY, STEPS_PER_EPOCH + 1, LOG_EVERY)
        ]
    return rows, steps


def build(folder: Path, trials: tuple[int, int] = (10, 10), epochs: int = EPOCHS) -> str:
    url = f"sqlite:///{folder / 'big.db'}"
    base = TrialConfig(epochs=epochs, data_dir=str(folder))
    gammas = [10.0**-e for e in range(4, 4 + trials[0])]
    taus = [10.0**-e for e in range(3, 3 + trials[1])]
    spec = grid_study("big", base, {"gamma": gammas, "tau": taus})
    store = Store(url, create=True)
    study, _ = store.create(spec)
    queue = TrialQueue(study)
    queue.enqueue_missing(expand(spec))
    rng = np.random.default_rng(0)
    while (trial := queue.claim()) is not None:
        rows, steps = fake_metrics(rng, epochs)
        store.metrics.write(study_id(study), trial_id(trial), rows, steps)
        study.tell(trial.number, rows[-1]["val_acc"])
    return url


def run(trials: tuple[int, int] = (10, 10), epochs: int = EPOCHS) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = build(folder, trials, epochs)
        start = time.perf_counter()
        store = Store(url)
        data = load_study_data(store, store.load("big"))
        read = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bopsweep",
                "plot",
                str(folder / "big.db"),
                "--out",
                str(folder / "figs"),
                "--layer",
                "last",
            ],
            check=True,
            capture_output=True,
        )
        plot = time.perf_counter() - start
        n = len(list((folder / "figs" / "big").iterdir()))
    print(
        f"\nplot, {len(data.runs)} trials × {epochs} epochs "
        f"({epochs * STEPS_PER_EPOCH // LOG_EVERY} logged steps each): "
        f"bopsweep plot {plot:.1f} s for {n} figures;"
        f" reading the study alone {read:.1f} s (ratio {plot / read:.1f})"
    )
    return {"plot_seconds": plot, "read_seconds": read, "figures": n}


if __name__ == "__main__":
    run()
