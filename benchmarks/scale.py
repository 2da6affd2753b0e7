"""How the study commands grow with a study's size: synthetic grids of 1,000 and 10,000 trials ×
100 epochs (rows written as the driver writes them: :mod:`benchmarks.synthetic`, no training).

At each size it times, in seconds:

* ``enqueue``: expanding the grid and queueing its trials (``TrialQueue.enqueue_missing``, what
  a study command does before it runs anything);
* ``claim``: one turn of the driver filling a slot: claiming the next WAITING trial of the study
  with every trial still queued;
* ``progress``: the study's progress as the driver's live display reads it (every trial, up to
  4 times a second), on the same study;
* ``status``, ``export`` (trials to CSV) and ``plot``: the commands as a user runs them, each a
  fresh process (imports included) on the completed study (``status`` and ``export``: the median
  of 3 runs, or of ``rounds``; ``plot`` once);

and the growth of each from the smallest size to the largest (linear: the ratio of the sizes);
then the driver's own work per trial at 1,000, 10,000 and 50,000 trials and the 2-worker /
1-worker ratio (:mod:`benchmarks.driver_load`).
The trials log 5 steps an epoch (a real run logs 50: at 10,000 trials that would be 50 million
step rows) and, unlike the driver's, report no intermediate values (100 writes a trial would
make the build take hours; the study's readers then load fewer rows than a real study's).
Last, the refusal of a 10^6-point grid (over ``--max-trials``): its seconds and peak memory,
which must not depend on the grid's size (it is counted, never expanded).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks import driver_load
from benchmarks.synthetic import complete_queued
from bopsweep.driver.queue import TrialQueue
from bopsweep.driver.state import study_progress
from bopsweep.errors import UserError
from bopsweep.store import Store
from bopsweep.studies import TrialConfig, expand, grid_study

STAGES = ("enqueue", "claim", "progress", "status", "export", "plot")
GOALS = {"enqueue": 10.0, "status": 3.0, "plot": 60.0}  # seconds, at 10,000 trials
LOGGED_STEPS = 5


def grid(name: str, trials: int, folder: Path, epochs: int) -> object:
    """A γ × τ grid of ``trials`` points (10 γ values, trials / 10 τ values)."""
    if trials % 10:
        raise ValueError(f"the scale benchmark needs a multiple of 10 trials, not {trials}")
    base = TrialConfig(epochs=epochs, data_dir=str(folder))
    n = trials // 10
    gammas = [float(f"{10.0 ** (-9 + 4 * k / 9):.6g}") for k in range(10)]
    taus = [float(f"{10.0 ** (-8 + 4 * k / max(n - 1, 1)):.9g}") for k in range(n)]
    return grid_study(name, base, {"gamma": gammas, "tau": taus})


def _unsynced(store: Store) -> None:
    """SQLite without fsync at each commit, to build the study in minutes (what is timed reads
    it, in other processes)."""
    import sqlalchemy as sa

    store.engine.dispose()
    sa.event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))


def _cli(*args: str, rounds: int = 1) -> float:
    """Seconds of a bopsweep command in a fresh process: the median of ``rounds``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bopsweep", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_size(folder: Path, trials: int, epochs: int, rounds: int = 3) -> dict[str, float]:
    db = folder / f"scale{trials}.db"
    store = Store(f"sqlite:///{db}", create=True)
    spec = grid("scale", trials, folder, epochs)
    study, _ = store.create(spec)
    queue = TrialQueue(study)
    times = {}
    start = time.perf_counter()
    queue.enqueue_missing(expand(spec, max_trials=trials))
    times["enqueue"] = time.perf_counter() - start
    start = time.perf_counter()
    claimed = queue.claim()
    times["claim"] = time.perf_counter() - start
    assert claimed is not None
    start = time.perf_counter()
    study_progress(queue.trials(), queue.base, search=None)
    times["progress"] = time.perf_counter() - start
    start = time.perf_counter()
    _unsynced(store)
    complete_queued(store, study, epochs, LOGGED_STEPS, curves=False, states=("WAITING", "RUNNING"))
    build = time.perf_counter() - start
    store.engine.dispose()
    os.sync()  # the study is on disk: its writing back does not slow what is timed
    times["status"] = _cli("status", str(db), rounds=rounds)
    csv = str(folder / f"trials{trials}.csv")
    times["export"] = _cli("export", str(db), "--output", csv, "--force", rounds=rounds)
    times["plot"] = _cli("plot", str(db), "--out", str(folder / f"figs{trials}"), "--layer", "last")
    print(f"  ({trials} trials: study built in {build:.0f} s)", flush=True)
    return times


def huge_grid_refusal() -> dict[str, float]:
    """Seconds and peak MiB of refusing a grid of 10^6 points (count, no expansion)."""
    values = [k * 1e-9 for k in range(1, 1001)]
    spec = grid_study("huge", TrialConfig(), {"tau": values, "gamma": values})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        expand(spec)
    except UserError:
        pass
    else:
        raise AssertionError("a 10^6-point grid was not refused")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"seconds": seconds, "peak_mib": peak}


def run(
    sizes: tuple[int, ...] = (1000, 10000),
    epochs: int = 100,
    rounds: int = 3,
    driver: dict | None = None,
) -> dict:
    """The stages at each size, then the driver's load (:mod:`benchmarks.driver_load`, with
    ``driver`` as its arguments)."""
    results: dict = {"sizes": list(sizes), "epochs": epochs, "seconds": {}}
    print(f"\nscale: grids of {', '.join(map(str, sizes))} trials × {epochs} epochs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results["seconds"][n] = one_size(Path(tmp), n, epochs, rounds)
    small, large = sizes[0], sizes[-1]
    growth = {s: results["seconds"][large][s] / results["seconds"][small][s] for s in STAGES}
    results["growth"] = growth
    results["refuse_1e6_grid"] = huge_grid_refusal()
    head = "".join(f"{n:>12,}" for n in sizes)
    print(f"  {'stage':<10}{head}   growth ({large // small}× trials; linear: {large / small:g})")
    for s in STAGES:
        cells = "".join(f"{results['seconds'][n][s]:11.2f}s" for n in sizes)
        goal = f"   goal ≤ {GOALS[s]:g} s at 10,000" if s in GOALS else ""
        print(f"  {s:<10}{cells}   {growth[s]:6.1f}×{goal}")
    r = results["refuse_1e6_grid"]
    print(
        f"  refusing a 10^6-point grid: {r['seconds'] * 1e3:.1f} ms, peak {r['peak_mib']:.1f} MiB"
    )
    results["driver"] = driver_load.run(**(driver or {}))
    return results


if __name__ == "__main__":
    run()
