"""Plotting a large study: 100 trials × 100 epochs (metrics inserted directly, no training).

Reports the seconds of ``bopsweep plot`` end to end (a fresh process, imports included), and
for scale, the seconds of reading the same study back without drawing, in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic import EPOCHS, LOG_EVERY, STEPS_PER_EPOCH, complete_queued
from bopsweep.driver.queue import TrialQueue
from bopsweep.readers.plots import load_study_data
from bopsweep.store import Store
from bopsweep.studies import TrialConfig, expand, grid_study


def build(folder: Path, trials: tuple[int, int] = (10, 10), epochs: int = EPOCHS) -> str:
    url = f"sqlite:///{folder / 'big.db'}"
    base = TrialConfig(epochs=epochs, data_dir=str(folder))
    gammas = [10.0**-e for e in range(4, 4 + trials[0])]
    taus = [10.0**-e for e in range(3, 3 + trials[1])]
    spec = grid_study("big", base, {"gamma": gammas, "tau": taus})
    store = Store(url, create=True)
    study, _ = store.create(spec)
    TrialQueue(study).enqueue_missing(expand(spec))
    complete_queued(store, study, epochs, curves=False)
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
