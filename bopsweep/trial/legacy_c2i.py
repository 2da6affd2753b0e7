"""C2I's meaning, and the conversion of values stored with the old one.

bopsweep 0.1 stored, as ``c2i`` and ``c2i_<layer>``, the share of binary weights
whose sign had *changed* since the start: the complement of the C2I ratio of Liu et al., ICML
2021, arXiv:2106.11309 (:mod:`bopsweep.trial.flips`). :data:`C2I_MEANING` marks values of the
paper's
meaning (a study attribute, :mod:`bopsweep.store.c2i_upgrade`; a checkpoint key,
:mod:`bopsweep.trial.run_dir`); the functions here turn old values into new ones. No torch, no
database: both the trial process and the store use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bopsweep.metric_keys import C2I, is_layer_column

if TYPE_CHECKING:
    import pandas as pd

C2I_MEANING = "kept"  # the values are the share of signs kept since the start


def is_c2i_column(name: str) -> bool:
    return is_layer_column(C2I, name)


def complement_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each C2I value v (a number) as 1 − v: the old meaning as the new, and back."""
    return {
        k: 1 - v
        if is_c2i_column(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
        else v
        for k, v in row.items()
    }


def complement_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [complement_row(r) for r in rows]


def complement_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A metric frame's C2I columns as 1 − v (NaN stays NaN)."""
    columns = [c for c in frame.columns if isinstance(c, str) and is_c2i_column(c)]
    if not columns:
        return frame
    frame = frame.copy()
    frame[columns] = 1 - frame[columns].astype(float)
    return frame
