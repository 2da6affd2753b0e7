"""Trial throughput of the driver: trials per minute with 1 and 2 CPU workers on tiny trials.

Each configuration runs the same grid of tiny trials (real trial processes, a real SQLite
database) one after the other, in the same run; the ratio is throughput(2) / throughput(1).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from bopsweep.driver import DispatchOptions, run_study
from bopsweep.studies import TrialConfig, grid_study
from bopsweep.trial.cifar_files import make_synthetic


def trials_per_minute(
    name: str,
    data: Path,
    folder: Path,
    n_trials: int,
    epochs: int,
    workers: int = 1,
    warm_starts: bool = True,
    stack: int = 1,
) -> float:
    """Trials per minute of a grid of ``n_trials`` tiny trials, a fresh database ``name``."""
    base = TrialConfig(width=1 / 16, batch_size=20, epochs=epochs, data_dir=str(data), device="cpu")
    values = [10.0 ** (-9 + i * 4 / max(1, n_trials - 1)) for i in range(n_trials)]
    spec = grid_study(name, base, {"gamma": values})
    options = DispatchOptions(
        storage=f"sqlite:///{folder / f'{name}.db'}",
        device="cpu",
        workers=workers,
        warm_starts=warm_starts,
        stack=stack,
    )
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # the study's log
        code = run_study(spec, options, echo=lambda *_: None)
    seconds = time.perf_counter() - start
    assert code == 0, f"the benchmark study failed (exit {code})"
    return n_trials / seconds * 60


def run(n_trials: int = 8, epochs: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_synthetic(folder / "data", n_train=200, n_test=50).parent
        results = {
            w: trials_per_minute(f"bench-{w}", data, folder, n_trials, epochs, workers=w)
            for w in (1, 2)
        }
    ratio = results[2] / results[1]
    print(f"\ndispatch, {n_trials} tiny trials ({epochs} epochs, width 1/16, 200 images), cpu")
    for w, tpm in results.items():
        print(f"  {w} worker(s): {tpm:6.1f} trials/min")
    print(f"  ratio 2 workers / 1 worker: {ratio:.2f}")
    return {"trials_per_minute": results, "ratio": ratio}


if __name__ == "__main__":
    run()
