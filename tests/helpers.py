"""Assertions shared by the command-line tests."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any, fragment: str) -> None:
    """Bad input: exit code 2, one line starting ``bopsweep: error:`` that holds ``fragment``,
    and no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("bopsweep: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
