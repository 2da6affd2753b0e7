"""Interleaved timing: every candidate is timed in each round, medians compared to a baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def measure(
    candidates: dict[str, Callable[[], object]],
    baseline: str,
    rounds: int = 7,
    inner: int = 3,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, float]]:
    """Median seconds per call of each candidate and its ratio to ``baseline``.

    Candidates run in turn within each round, so drifts in machine load hit all of them alike.
    Each is called once untimed first (warm-up: allocations, lazy init, autotuning).
    """
    for fn in candidates.values():
        fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / inner)
    base = statistics.median(samples[baseline])
    return {
        name: {"seconds": statistics.median(s), "ratio": statistics.median(s) / base}
        for name, s in samples.items()
    }


def report(title: str, results: dict[str, dict[str, float]], baseline: str) -> None:
    print(f"\n{title}  (ratio = median time / median time of {baseline!r})")
    width = max(map(len, results))
    for name, r in results.items():
        print(f"  {name:<{width}}  {r['seconds'] * 1e3:10.2f} ms   ratio {r['ratio']:6.3f}")
