"""Chosen columns of the metric tables, picked out of the stored JSON by the database.

A figure needs a handful of a row's fifty values (accuracy, π_t of the layers drawn); decoding
every row in Python costs most of ``bopsweep plot`` on a large study (at 10,000 trials × 100
epochs, 10^8 numbers). SQLite's JSON functions and PostgreSQL's ``jsonb`` pick the values out in
the database instead, only from rows of the study's trials as they are now (the same start time;
see :mod:`bopsweep.store.metrics`), and send them back as text, ``trial,epoch,[v1,v2,…]`` per
row, that numpy parses: a Python object per value (a fetched row of numbers, or a decoded one)
would cost more than the rest together. The values' text is JSON's own (``json_extract`` with
several paths, ``jsonb``), every digit kept, so the frame equals one decoded in Python.

A bundle of logged steps is ``{"columns": [...], "rows": [[...], ...]}`` as the writer makes it;
each distinct columns header (nearly always one per study) is read once, without parsing the
bundles, and a value's position in it picked out of every row of the bundles that share it.

:func:`select_frame` answers ``None`` where the database cannot (another dialect, a SQLite
without JSON functions, a stored value JSON does not allow, such as ``NaN``, or that is not a
number; a column name other than letters, digits and ``_``); the caller then decodes the rows
in Python, which gives the same frame.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import TYPE_CHECKING, Any

# numpy, pandas and sqlalchemy: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

CHUNK = 10_000  # texts (rows, or bundles of steps) fetched and parsed at a time
# names a JSON path finds as written (SQLite compares a key with its stored text, which
# json.dumps escapes: "π" is stored as "\u03c0"); bopsweep's are all of this form
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]")


def select_frame(
    engine: Any, table: str, study_id: int, columns: Sequence[str], legacy: bool, steps: bool
) -> pd.DataFrame | None:
    """``trial_id``, ``epoch`` (and ``step`` for ``steps``) and ``columns`` (floats, NaN where
    a row has none) of the study's rows, sorted by the keys; ``None`` where the database cannot
    pick them out. ``legacy``: rows without their trial's start."""
    import pandas as pd
    import sqlalchemy as sa

    sql = _DIALECTS.get(engine.dialect.name)
    columns = list(dict.fromkeys(columns))
    if sql is None or not all(_PLAIN.fullmatch(c) for c in columns):
        return None
    # rows of the study's trials, and (where rows carry it) of each trial's present start
    source = (
        f"FROM {table} m JOIN trials t ON t.trial_id = m.trial_id"
        + ("" if legacy else " AND t.datetime_start = m.trial_start")
        + " WHERE t.study_id = :sid"
        + (" AND m.study_id = :sid" if legacy else "")
    )
    parts: list[pd.DataFrame | None] = []
    try:
        with engine.connect() as conn:
            if not steps:
                keys = _padded([f":p{i}" for i in range(len(columns))])
                params = {f"p{i}": sql.key(c) for i, c in enumerate(columns)}
                rows = conn.execute(
                    sa.text(f"SELECT {sql.epoch_text(keys)} {source}"), {"sid": study_id, **params}
                )
                parts.append(_parsed(rows, ["epoch", *columns], len(keys)))
            else:
                heads = conn.execute(
                    sa.text(f"SELECT DISTINCT {sql.head} {source}"), {"sid": study_id}
                ).scalars()
                for head in list(heads):
                    names = _columns(head)
                    if names is None or "step" not in names:
                        return None
                    present = [c for c in ("step", *columns) if c in names]
                    positions = _padded([names.index(c) for c in present])
                    q = f"SELECT {sql.bundle_text(positions)} {source}"
                    q += " AND substr(m.data, 1, :n) = :head"  # the bundles with this head
                    rows = conn.execute(sa.text(q), {"sid": study_id, "n": len(head), "head": head})
                    parts.append(_parsed(rows, ["epoch", *present], len(positions)))
    except sa.exc.DBAPIError:  # e.g. NaN in a stored row, which JSON does not allow
        return None
    if any(part is None for part in parts):
        return None
    frame = pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()
    return projected(frame, columns, steps)


class _SQLite:
    """SQLite's JSON functions (built in since 3.38, and in most builds before)."""

    head = """substr(m.data, 1, instr(m.data, '"rows"') - 1)"""

    @staticmethod
    def key(name: str) -> str:
        return f'$."{name}"'  # a plain name (_PLAIN): nothing to escape

    @staticmethod
    def epoch_text(keys: list[str]) -> str:
        text = "m.trial_id || ',' || m.epoch"
        return text + (f" || ',' || json_extract(m.data, {', '.join(keys)})" if keys else "")

    @staticmethod
    def bundle_text(positions: list[int]) -> str:
        paths = ", ".join(f"'$[{i}]'" for i in positions)
        row = f"m.trial_id || ',' || m.epoch || ',' || json_extract(r.value, {paths})"
        return f"(SELECT group_concat({row}, ',') FROM json_each(m.data, '$.rows') AS r)"


class _PostgreSQL:
    """PostgreSQL's ``jsonb`` (9.5 and later); each row's text is parsed once."""

    head = """substr(m.data, 1, strpos(m.data, '"rows"') - 1)"""

    @staticmethod
    def key(name: str) -> str:
        return name

    @staticmethod
    def epoch_text(keys: list[str]) -> str:
        if not keys:
            return "concat(m.trial_id, ',', m.epoch)"
        values = ", ".join(f"j.d -> {k}" for k in keys)
        text = f"concat(m.trial_id, ',', m.epoch, ',', CAST(jsonb_build_array({values}) AS text))"
        return f"(SELECT {text} FROM (SELECT CAST(m.data AS jsonb) AS d) AS j)"

    @staticmethod
    def bundle_text(positions: list[int]) -> str:
        values = ", ".join(f"r.value -> {i}" for i in positions)
        row = f"concat(m.trial_id, ',', m.epoch, ',', CAST(jsonb_build_array({values}) AS text))"
        rows = "jsonb_array_elements(CAST(m.data AS jsonb) -> 'rows') AS r(value)"
        return f"(SELECT string_agg({row}, ',') FROM {rows})"


_DIALECTS: dict[str, Any] = {"sqlite": _SQLite, "postgresql": _PostgreSQL}


def _padded(items: list[Any]) -> list[Any]:
    """At least two, where there are any: SQLite's ``json_extract`` answers JSON text (every
    digit) only for several paths; for one, a number, printed with 15 digits. The copy is
    parsed and dropped. (Positions and bind names are our own, so written into statements.)"""
    return [*items, *items] if len(items) == 1 else items


def _columns(head: str | None) -> list[str] | None:
    """The column names of a bundle's head, ``{"columns": [...], ``; None if it is not one."""
    if not head:
        return None
    try:
        doc = json.loads(head.rstrip().rstrip(",") + "}")
    except ValueError:
        return None
    names = doc.get("columns") if isinstance(doc, dict) else None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _parsed(result: Any, names: list[str], values: int) -> pd.DataFrame | None:
    """The texts of ``result``, each ``trial,epoch,[v, …]`` with ``values`` values (the first
    ``len(names) - 1`` kept), as a frame of ``trial_id`` and ``names`` (floats; ``null`` is
    NaN); None where a text holds anything else (a string, a boolean, a list or an object
    where a number was asked for)."""
    import numpy as np
    import pandas as pd

    width, keep = 2 + values, 1 + len(names)
    chunks = []
    for texts in result.scalars().partitions(CHUNK):
        text = ",".join(filter(None, texts))  # a bundle of no rows has no text
        if not text:
            continue
        # one [...] of values a row, never nested (a list among the values would add numbers)
        brackets = text.encode().translate(None, _NOT_BRACKETS)
        rows = len(brackets) // 2
        if brackets != b"[]" * rows or (values and not rows):
            return None
        text = text.replace("[", "").replace("]", "").replace("null", "nan")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy warns where it stops parsing
                parsed = np.fromstring(text, dtype=np.float64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
        if parsed.size != text.count(",") + 1 or parsed.size % width:
            return None
        if values and parsed.size != rows * width:
            return None
        chunks.append(parsed.reshape(-1, width)[:, :keep])
    array = np.concatenate(chunks) if chunks else np.empty((0, keep))
    return pd.DataFrame(array, columns=["trial_id", *names])


def projected(frame: pd.DataFrame, columns: Sequence[str], steps: bool) -> pd.DataFrame:
    """``frame`` (of the database's or of Python's decoding) as :func:`select_frame` gives it:
    the keys as integers, then those of ``columns`` any row has a number for, as floats (NaN
    where a row has none); sorted by the keys."""
    import pandas as pd

    keys = ["trial_id", "epoch"] + (["step"] if steps else [])
    columns = list(dict.fromkeys(columns))
    if frame.empty:
        return pd.DataFrame(columns=keys)
    # a value that is not a number (none of bopsweep's) is missing, as the database's is None
    values = {
        c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in columns if c in frame
    }
    have = [c for c, v in values.items() if v.notna().any()]
    frame = frame[keys].astype("int64").assign(**{c: values[c] for c in have})
    return frame.sort_values(keys, ignore_index=True)
