"""Run every benchmark: ``python -m benchmarks [--quick] [--device cuda] [--json FILE]``.

Each prints its figures as ratios against a baseline timed in the same run; the JSON summary
holds them all, to compare across commits. ``--quick`` runs each once at a tiny size (a smoke
test: the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks import (
    cli_startup,
    data_epoch,
    dispatch,
    optimizer_step,
    plots,
    scale,
    search,
    stack,
    train_step,
    warm_start,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round each")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks.json"))
    parser.add_argument("--only", nargs="*", help="names of benchmarks to run")
    args = parser.parse_args()
    q, dev = args.quick, args.device
    suite = {
        "optimizer_step": lambda: optimizer_step.run(
            width=1 / 16 if q else 1.0, device=dev, rounds=1 if q else 7, fused=not q
        ),
        "train_step": lambda: train_step.run(
            widths=(1 / 16,) if q else (1 / 8, 1 / 4),
            batch=20 if q else 100,
            rounds=1 if q else 7,
            device=dev,
        ),
        "data_epoch": lambda: data_epoch.run(
            n=500 if q else 50_000, device=dev, rounds=1 if q else 5
        ),
        "dispatch": lambda: dispatch.run(n_trials=2 if q else 8, epochs=1 if q else 3),
        "warm_start": lambda: warm_start.run(
            n_trials=2 if q else 8, epochs=1 if q else 3, rounds=1 if q else 3
        ),
        "stack": lambda: stack.run(
            widths=(1 / 16,) if q else (1 / 8, 1 / 4),
            k=2 if q else 4,
            n_train=100 if q else 1000,
            rounds=1 if q else 3,
            device=dev,
            driver_trials=2 if q else 8,
        ),
        "cli_startup": lambda: cli_startup.run(rounds=1 if q else 7),
        "search": lambda: search.run(seeds=1 if q else 5),
        "plots": lambda: plots.run(trials=(2, 2) if q else (10, 10), epochs=3 if q else 100),
        "scale": lambda: scale.run(
            sizes=(20, 40) if q else (1000, 10000),
            epochs=3 if q else 100,
            rounds=1 if q else 3,
            driver={"sizes": (20, 40), "run": 3, "worker_trials": 3, "rounds": 1} if q else None,
        ),
    }
    results = {
        "machine": platform.node(),
        "device": dev,
        "torch": torch.__version__,
        "quick": q,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for name, bench in suite.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results[name] = bench()
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)")
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nsummary written to {args.json}")


if __name__ == "__main__":
    main()
