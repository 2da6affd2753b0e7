"""A run's best epoch, as bopsweep counts it (binary-weight epochs only), and its summary.

A two-step run (:mod:`bopsweep.trial.two_step`) trains real kernels in its first ``two_step``
epochs;
that network is not binary, so its accuracy is never a binary network's best. Its best is kept
apart, as ``step1_best_*``. The first of equal epochs wins, as AdamBNN's strict ``>`` keeps
it. Pure: rows in, numbers out (the trial process, the store and the readers share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bopsweep.attr_keys import (
    BEST_EPOCH,
    BEST_VAL_ACC,
    FINAL_TRAIN_ACC,
    SECONDS,
    STEP1_BEST_EPOCH,
    STEP1_BEST_VAL_ACC,
)
from bopsweep.metric_keys import EPOCH, TRAIN_ACC, VAL_ACC


def best_epochs(rows: Sequence[dict[str, Any]], two_step: int | None) -> dict[str, Any]:
    """``best_val_acc``/``best_epoch`` over the binary-weight epochs of ``rows`` (each with
    ``epoch`` and ``val_acc``; the last epoch where none is binary), and for a two-step run
    ``step1_best_val_acc``/``step1_best_epoch`` over its step 1. Empty for no rows."""
    if not rows:
        return {}
    split = two_step or 0
    binary = [r for r in rows if r[EPOCH] > split] or list(rows[-1:])
    best = max(binary, key=lambda r: r[VAL_ACC])
    out = {BEST_VAL_ACC: best[VAL_ACC], BEST_EPOCH: best[EPOCH]}
    step1 = [r for r in rows if r[EPOCH] <= split]
    if step1:
        best1 = max(step1, key=lambda r: r[VAL_ACC])
        out.update({STEP1_BEST_VAL_ACC: best1[VAL_ACC], STEP1_BEST_EPOCH: best1[EPOCH]})
    return out


def summarize(history: list[dict[str, Any]], seconds: float, two_step: int = 0) -> dict[str, Any]:
    """A finished run's summary: its final and best validation accuracy (``best_*`` over its
    binary-weight epochs, ``step1_best_*`` over a two-step run's step 1: :func:`best_epochs`),
    final training accuracy and time."""
    if not history:
        return {"epochs": 0, SECONDS: seconds}
    return {
        "epochs": history[-1][EPOCH],
        "final_val_acc": history[-1][VAL_ACC],
        **best_epochs(history, two_step),
        FINAL_TRAIN_ACC: history[-1][TRAIN_ACC],
        SECONDS: seconds,
        "seconds_per_epoch": seconds / len(history),
    }
