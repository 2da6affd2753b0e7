"""Trials per minute with 1, 2 and 4 ``bopsweep worker`` processes on one PostgreSQL study,
against one SQLite driver, on tiny trials, measured in the same run.

Needs a server: ``BOPSWEEP_TEST_POSTGRES`` (``.ci/postgres.sh setup`` prints one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bopsweep.trial.cifar_files import make_synthetic

TRIALS = 8
TINY = ["--width", "0.0625", "--batch-size", "20", "--epochs", "1", "--device", "cpu", "--quiet"]


def bopsweep(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bopsweep", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def queue(storage: str, data: Path, cwd: Path) -> None:
    values = ",".join(f"{10.0 ** (-9 + i * 0.5):.3g}" for i in range(TRIALS))
    p = bopsweep(
        "grid",
        "--param",
        "gamma",
        "--values",
        values,
        "--storage",
        storage,
        "--study",
        "bench",
        "--queue-only",
        "--data-dir",
        str(data),
        *TINY,
        cwd=cwd,
    )
    assert p.wait() == 0


def postgres_rate(base_url: str, workers: int, data: Path, cwd: Path) -> float:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base_url.rsplit("/", 1)[0] + "/" + name
    try:
        queue(url, data, cwd)
        start = time.perf_counter()
        procs = [
            bopsweep(
                "worker", "--storage", url, "--study", "bench", "--workers", "1", "--quiet", cwd=cwd
            )
            for _ in range(workers)
        ]
        assert all(p.wait() == 0 for p in procs)
        return TRIALS / (time.perf_counter() - start) * 60
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def sqlite_rate(workers: int, data: Path, cwd: Path) -> float:
    storage = f"sqlite:///{cwd / f'bench-{workers}.db'}"
    queue(storage, data, cwd)
    start = time.perf_counter()
    p = bopsweep("resume", "--storage", storage, "--workers", str(workers), "--quiet", cwd=cwd)
    assert p.wait() == 0
    return TRIALS / (time.perf_counter() - start) * 60


def run() -> dict:
    url = os.environ.get("BOPSWEEP_TEST_POSTGRES")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        data = make_synthetic(cwd / "data", n_train=200, n_test=50).parent
        results = {
            "sqlite, 1 driver, 1 slot": sqlite_rate(1, data, cwd),
            "sqlite, 1 driver, 2 slots": sqlite_rate(2, data, cwd),
        }
        if url:
            for n in (1, 2, 4):
                results[f"postgresql, {n} worker(s)"] = postgres_rate(url, n, data, cwd)
    base = results["sqlite, 1 driver, 1 slot"]
    print(
        f"\nworkers, {TRIALS} tiny trials (1 epoch, width 1/16, 200 images), {os.cpu_count()} cores"
    )
    for name, rate in results.items():
        print(f"  {name:<28} {rate:6.1f} trials/min   ratio {rate / base:.2f}")
    if not url:
        print("  (PostgreSQL skipped: set BOPSWEEP_TEST_POSTGRES)")
    return results


if __name__ == "__main__":
    run()
