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


def best_epochs(rows: Sequence[dict[str, Any]], two_step: int | None) -> dict[str, Any]:
    """``best_val_acc``/``best_epoch`` over the binary-weight epochs of ``rows`` (each with
    ``epoch`` and ``val_acc``; the last epoch where none is binary), and for a two-step run
    ``step1_best_val_acc``/``step1_best_epoch`` over its step 1. Empty for no rows."""
    if not rows:
        return {}
    split = two_step or 0
    binary = [r for r in rows if r["epoch"] > split] or list(rows[-1:])
    best = max(binary, key=lambda r: r["val_acc"])
    out = {"best_val_acc": best["val_acc"], "best_epoch": best["epoch"]}
    step1 = [r for r in rows if r["epoch"] <= split]
    if step1:
        best1 = max(step1, key=lambda r: r["val_acc"])
        out.update(step1_best_val_acc=best1["val_acc"], step1_best_epoch=best1["epoch"])
    return out


def summarize(history: list[dict[str, Any]], seconds: float, two_step: int = 0) -> dict[str, Any]:
    """A finished run's summary: its final and best validation accuracy (``best_*`` over its
    binary-weight epochs, ``step1_best_*`` over a two-step run's step 1: :func:`best_epochs`),
    final training accuracy and time."""
    if not history:
        return {"epochs": 0, "seconds": seconds}
    return {
        "epochs": history[-1]["epoch"],
        "final_val_acc": history[-1]["val_acc"],
        **best_epochs(history, two_step),
        "final_train_acc": history[-1]["train_acc"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / len(history),
    }
