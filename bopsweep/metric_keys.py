"""The columns of a metric row, declared once.

A trial writes one row per epoch (``metrics.csv`` in its folder, ``bopsweep_epochs`` in the
database) and one per logged step (``steps.csv``, ``bopsweep_steps``); the readers (status,
export, table, figures, TensorBoard) pick columns out by these names, which are the CSV's and
the database's as they have always been. Per-layer columns are ``<name>_<layer>``
(:func:`layer_column`) for the names in :data:`PER_LAYER`.

No imports: the trial process and every reader use it.
"""

from __future__ import annotations

EPOCH = "epoch"  # 1, 2, …: the epoch the row ends
STEP = "step"  # optimizer steps so far
STEPS = "steps"  # in a logged step's row: the optimizer steps it spans
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
# the scheduled hyperparameters' values in the epoch (None where the optimizer has none)
HYPER_COLUMNS = ("gamma", "sigma", "tau", "lr")
PI = "pi"  # π_t: the share of binary weights flipped in a step (bopsweep.trial.flips)
FLIP_FRAC = "flip_frac"  # the share of binary weights flipped in the epoch
C2I = "c2i"  # the share of binary weights whose sign is still the initial one
PER_LAYER = (PI, FLIP_FRAC, C2I)  # each also per layer: layer_column(name, layer)

# an epoch row's columns before the per-layer ones, in the order a row holds them
EPOCH_COLUMNS = (EPOCH, STEP, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, *HYPER_COLUMNS,
                 PI, FLIP_FRAC, C2I)  # fmt: skip


def layer_column(name: str, layer: str) -> str:
    """The column of ``name`` (one of :data:`PER_LAYER`) for one layer: ``pi_fc3``."""
    return f"{name}_{layer}"


def is_layer_column(name: str, column: str) -> bool:
    """Whether ``column`` is ``name`` or one of its per-layer columns."""
    return column == name or column.startswith(f"{name}_")
