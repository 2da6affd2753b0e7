"""Synthetic studies for the benchmarks: queued trials completed with made-up metric rows,
written through the calls the driver makes (no training).

Each WAITING trial is claimed (moved to RUNNING), its epoch rows and bundles of logged steps
written by :meth:`~bopsweep.store.metrics.MetricTables.write`, its learning curve reported as
intermediate values (optional: one write per epoch) and it is told COMPLETE.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bopsweep.driver.queue import TrialQueue
from bopsweep.readers.plots import LAYERS
from bopsweep.store.optuna_adapter import storage_of, study_id, trial_id

if TYPE_CHECKING:
    import optuna

    from bopsweep.store import Store

EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 100, 500, 10


def fake_metrics(
    rng: np.random.Generator, epochs: int, logged: int = STEPS_PER_EPOCH // LOG_EVERY
) -> tuple[list[dict], dict[int, list[dict]]]:
    """Rows of a plausible run: ``epochs`` epoch rows and ``logged`` logged steps per epoch."""
    every = STEPS_PER_EPOCH // logged
    rows, steps = [], {}
    for e in range(1, epochs + 1):
        acc = 0.9 * (1 - math.exp(-e / 20)) + rng.normal(0, 0.01)
        pis = {f"pi_{n}": -9 + 8 * math.exp(-e / 10) for n in LAYERS}
        fracs = {f"flip_frac_{n}": math.exp(p) for n, p in zip(LAYERS, pis.values())}
        c2is = {f"c2i_{n}": 0.3 * (1 - math.exp(-e / 30)) for n in LAYERS}
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
                "c2i": 0.3 * (1 - math.exp(-e / 30)),
                **c2is,
            }
        )
        steps[e] = [
            {
                "epoch": e,
                "step": (e - 1) * STEPS_PER_EPOCH + s,
                "steps": every,
                "pi": -9 + 8 * math.exp(-(e - 1 + s / STEPS_PER_EPOCH) / 10),
                "flip_frac": 0.01,
                **pis,
                **fracs,
            }
            for s in range(every, every * logged + 1, every)
        ]
    return rows, steps


def complete_queued(
    store: Store,
    study: optuna.Study,
    epochs: int = EPOCHS,
    logged: int = STEPS_PER_EPOCH // LOG_EVERY,
    curves: bool = True,
    seed: int = 0,
    states: tuple[str, ...] = ("WAITING",),
) -> int:
    """Complete every trial of ``study`` in ``states`` (WAITING: claimed first) with synthetic
    rows; how many. ``curves``: also report each epoch's validation accuracy as an intermediate
    value, as the driver does."""
    import optuna

    queue = TrialQueue(study)
    storage, sid = storage_of(study), study_id(study)
    rng = np.random.default_rng(seed)
    # listed once, not per trial
    waiting = sorted(queue.trials(*states), key=lambda t: t.number)
    for t in waiting:
        tid = trial_id(t)
        storage.set_trial_state_values(tid, optuna.trial.TrialState.RUNNING)  # as claim() does
        rows, steps = fake_metrics(rng, epochs, logged)
        store.metrics.write(sid, tid, rows, steps)
        if curves:
            for row in rows:
                queue.report(tid, row["epoch"], row["val_acc"])
        queue.tell(tid, "COMPLETE", rows[-1]["val_acc"])
    return len(waiting)
