"""Writing a frame of trials or metrics to a file, losslessly: CSV, JSON or Parquet.

What a study stores is what a reader gets back: every float as the shortest text that reads
back to the same double (CSV through pandas, JSON through ``json``: pandas' own ``to_json``
rounds to 10 significant digits, so γ = 7.246e-10 became 7e-10), NaN as an empty CSV field or
JSON ``null``, datetimes and durations as ISO 8601 text (``2025-01-31T09:05:00.123456``,
``P0DT0H1M2.5S``: ``pd.to_datetime`` and ``pd.to_timedelta`` read them back) and, in
Parquet, as its own timestamp and duration types.

The format is the output's suffix (``.csv``, ``.json``, ``.parquet``), or ``--format``; the two
must agree. Files are written whole or not at all (:func:`bopsweep.files.atomic_open`).
``-o -`` writes to standard output: CSV, or ``--format`` (Parquet, binary, only to a pipe).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from bopsweep.defaults import ExportFormat, values
from bopsweep.errors import UserError
from bopsweep.files import atomic_open

PARQUET_INSTALL = "pip install 'bopsweep[parquet]' (or pip install pyarrow)"
STDOUT = "-"  # -o -: standard output


def export_format(output: Path, chosen: ExportFormat | None) -> ExportFormat:
    """The format to write ``output`` in: its suffix's, or ``chosen`` (``--format``), which a
    known suffix must not contradict. A file named ``trials.parquet`` holding CSV is a trap."""
    suffix = output.suffix.lower().lstrip(".")
    by_suffix = ExportFormat(suffix) if suffix in values(ExportFormat) else None
    if chosen is None:
        if by_suffix is None:
            known = ", ".join(f".{v}" for v in values(ExportFormat))
            raise UserError(
                f"cannot tell the format of {output} from its suffix; name it {known}, "
                "or pass --format"
            )
        return by_suffix
    if by_suffix is not None and by_suffix != chosen:
        raise UserError(
            f"{output} has the suffix .{by_suffix.value} but --format is {chosen.value}; "
            f"name the file .{chosen.value} or drop --format"
        )
    return chosen


def stdout_format(chosen: ExportFormat | None) -> ExportFormat:
    """The format of ``-o -``: ``--format``, else CSV (what a pipe into another tool expects).
    Parquet is binary: refused on a terminal, which it would fill with bytes."""
    chosen = chosen or ExportFormat.CSV
    if chosen == ExportFormat.PARQUET and sys.stdout.isatty():
        raise UserError(
            "Parquet is binary: -o - writes it only to a pipe or a file (-o - > trials.parquet); "
            "on a terminal give --format csv or json"
        )
    return chosen


def write_stdout(frame: pd.DataFrame, format: ExportFormat) -> None:
    """Write ``frame`` to standard output in ``format``. A reader that stops early (``| head``)
    ends the command quietly: exit code 1, no traceback."""
    try:
        if format == ExportFormat.PARQUET:
            sys.stdout.flush()
            frame.to_parquet(sys.stdout.buffer, engine="pyarrow", index=False)
            sys.stdout.buffer.flush()
        elif format == ExportFormat.JSON:
            sys.stdout.write(to_json(frame))
        else:
            _as_text(frame).to_csv(sys.stdout, index=False)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at /dev/null
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


def check_engine(format: ExportFormat) -> None:
    """Parquet needs pyarrow (an optional dependency): refused with the install line before
    anything is written."""
    if format != ExportFormat.PARQUET:
        return
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError(
            f"writing Parquet needs pyarrow; install it with: {PARQUET_INSTALL}"
        ) from None


def write_frame(frame: pd.DataFrame, output: Path, format: ExportFormat) -> None:
    """Write ``frame`` to ``output`` in ``format``, atomically (a crash leaves the old file)."""
    try:
        if format == ExportFormat.PARQUET:
            with atomic_open(output, "wb") as f:
                frame.to_parquet(f, engine="pyarrow", index=False)
        elif format == ExportFormat.JSON:
            with atomic_open(output, "w", encoding="utf-8") as f:
                f.write(to_json(frame))
        else:
            with atomic_open(output, "w", newline="", encoding="utf-8") as f:
                _as_text(frame).to_csv(f, index=False)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}") from None


def to_json(frame: pd.DataFrame) -> str:
    """The frame as a JSON array of one object per row, values exactly as in the frame."""
    rows = [
        {str(k): json_value(v) for k, v in zip(frame.columns, row)}
        for row in frame.itertuples(index=False, name=None)
    ]
    return json.dumps(rows, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def json_value(value: Any) -> Any:
    """One value as JSON holds it: Python numbers (a float's ``repr`` reads back the same),
    NaN, infinities and missing values as None, datetimes and durations as ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # pandas' Timestamp too
        return None if _missing(value) else value.isoformat()
    if isinstance(value, dt.timedelta):  # pandas' Timedelta too
        return None if _missing(value) else iso_duration(value)
    if isinstance(value, (str, bool)):
        return value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # a numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _missing(value):  # pandas' NA and NaT
        return None
    if isinstance(value, dt.datetime):  # numpy's datetime64 unboxed
        return value.isoformat()
    return value


def iso_duration(value: dt.timedelta) -> str:
    """A duration as ISO 8601 (``P0DT0H1M2.5S``, pandas' form: ``pd.Timedelta`` reads it back
    to the nanosecond)."""
    nanos = getattr(value, "value", None)  # pandas' Timedelta: nanoseconds
    if not isinstance(nanos, int):
        nanos = ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 1000
    sign = "-" if nanos < 0 else ""
    seconds, frac = divmod(abs(nanos), 1_000_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{sign}P{days}DT{hours}H{minutes}M{seconds}{fraction}S"


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its datetime and duration columns as ISO 8601 text (pandas would write
    ``2025-01-31 09:05:00`` and ``0 days 00:01:02.5``); numbers stay numbers, which pandas
    writes by ``repr``, the shortest text that reads back to the same double."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_datetime64_any_dtype(column) or pd.api.types.is_timedelta64_dtype(
            column
        ):
            out[name] = column.astype(object).map(json_value)
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
