"""TOML files read as tables and checked key by key: study files and their designs' sections,
and search-space files. Each bad key or value is one clear line naming where it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli, the backport tomllib came from (declared for Python 3.10)
    import tomli as tomllib  # type: ignore[import-not-found]

from bopsweep.errors import UserError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's contents; a missing or unreadable file is one clear line."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise UserError(
            f"cannot read {what} {path}: its arrays or inline tables are nested too deeply"
        ) from None


def table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``[key]`` of ``data`` (empty if absent), which must be a table."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"[{key}] in {where} must be a table")
    return value


def typed(data: dict[str, Any], where: str, **types: type) -> None:
    """Each present key of ``data`` has its type (float accepts integers, never booleans)."""
    for key, typ in types.items():
        if key not in data:
            continue
        value = data[key]
        ok = isinstance(value, (int, float) if typ is float else typ) and not isinstance(
            value, bool
        )
        if not ok:
            kind = "a number" if typ is float else "a string" if typ is str else typ.__name__
            raise UserError(f"{key} in {where} must be {kind}, got {value!r}")


def only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    """``data`` holds no key outside ``allowed``."""
    unknown = set(data) - allowed
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(sorted(unknown))} in {where}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
