"""Stored metric rows decoded into one frame: the JSON of millions of rows, a batch at a time.

Rows are gathered as lists by their columns (one frame per set of columns, nearly always one),
not as a dict each: a study of 10,000 trials holds millions of rows; and decoded a batch at a
time, as one JSON array (a fifth faster than one ``json.loads`` per row).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

BATCH = 10_000  # metric rows fetched, and decoded, at a time
Parse = Callable[[Any], "tuple[tuple[str, ...], list[list[Any]]]"]


def decoded_frame(rows: Iterable[tuple[int, int, str]], parse: Parse) -> pd.DataFrame:
    """``rows`` ((trial id, epoch, data) each) as one frame, with their trial's id, sorted by
    trial, epoch (and step); ``parse(decoded)`` gives a stored row's (or bundle's) column names
    and rows of values."""
    import pandas as pd

    groups: dict[tuple[str, ...], tuple[list[int], list[list[Any]]]] = {}
    for batch in _batches(iter(rows)):
        decoded = json.loads("[" + ",".join(data for _, _, data in batch) + "]")
        for (t, _, _), doc in zip(batch, decoded, strict=True):
            columns, values = parse(doc)
            ids, gathered = groups.setdefault(columns, ([], []))
            ids.extend([t] * len(values))
            gathered.extend(values)
    if not groups:
        return pd.DataFrame()
    frames = []
    for columns, (ids, gathered) in groups.items():
        part = pd.DataFrame(gathered, columns=list(columns))
        part.insert(0, "trial_id", ids)
        frames.append(part)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)
    keys = ["trial_id", "epoch"] + (["step"] if "step" in frame else [])
    return frame.sort_values(keys, ignore_index=True)


def _batches(rows: Iterator[tuple[int, int, str]]) -> Iterator[list[tuple[int, int, str]]]:
    """``rows`` in lists of :data:`BATCH` (itertools.batched is Python 3.12)."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
