"""Two definitions of a study compared: the one stored and the one a command gives, without the
settings that only say where it runs; what differs, said as ``field: stored → given``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

SHOWN = 4  # differences named in the refusal; the rest are counted
WIDTH = 40  # characters of a value shown


def comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored definition (a StudySpec's dict) without the settings that only say where it
    runs (data path, device, download) and a search's total, which may grow (the study is
    topped up)."""
    data: dict[str, Any] = json.loads(json.dumps(spec))
    for key in ("data_dir", "device", "download"):
        data.get("base", {}).pop(key, None)
    data.get("meta", {}).pop("trials", None)
    return data


def grows(stored: dict[str, Any], given: dict[str, Any]) -> bool:
    """Whether ``given`` (a comparable definition) only grows ``stored``: each grid axis keeps
    its values (in any order) and may add more, the seeds per configuration may rise, and a
    power-of-ten study's ranges widen with its axes; nothing else differs. Running it adds
    the missing trials, and every trial stored stays one of the study."""
    old, new = json.loads(json.dumps(stored)), json.loads(json.dumps(given))
    old_axes, new_axes = old.pop("grid", None) or {}, new.pop("grid", None) or {}
    old_seeds, new_seeds = old.pop("seeds", 1), new.pop("seeds", 1)
    for definition in (old, new):
        definition.get("meta", {}).pop("ranges", None)  # pow10: said again by its axes
    if old != new or set(old_axes) != set(new_axes) or new_seeds < old_seeds:
        return False
    return all(_texts(old_axes[a]) <= _texts(new_axes[a]) for a in old_axes)


def _texts(values: list[Any]) -> set[str]:
    """An axis's values as their JSON text, as they are stored (1 is not 1.0)."""
    return {json.dumps(v) for v in values}


def differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``field: stored → given`` for each setting of two comparable definitions that differs,
    fields named by their dotted path (``base.epochs``, ``meta.axes.gamma``). Values compare
    as their JSON text, as they are stored: ``1``, ``1.0`` and ``true`` differ."""
    old, new = dict(_leaves(stored)), dict(_leaves(given))
    return [
        f"{field}: {_shown(old.get(field))} → {_shown(new.get(field))}"
        for field in sorted(old.keys() | new.keys())
        if old.get(field) != new.get(field)
    ]


def summary(found: list[str]) -> str:
    """The first :data:`SHOWN` differences, and how many more."""
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more


def free_name(name: str, taken: list[str]) -> str:
    """``NAME-2``, ``NAME-3``, …: the first that no study of the database has."""
    return next(f"{name}-{k}" for k in range(2, len(taken) + 3) if f"{name}-{k}" not in taken)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, JSON text) of each value below ``value`` that is no non-empty dict (an
    empty one is a value, unless it is the whole definition)."""
    if isinstance(value, dict) and (value or not path):
        for key in sorted(value, key=str):
            yield from _leaves(value[key], f"{path}.{key}" if path else str(key))
    else:
        yield path, json.dumps(value, sort_keys=True)


def _shown(text: str | None) -> str:
    if text is None:
        return "(none)"
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"
