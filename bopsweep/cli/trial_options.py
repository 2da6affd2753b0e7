"""The trial options of ``train`` and every study command, made from the declared settings.

Each setting of :data:`bopsweep.trial.settings.SETTINGS` with ``option=True`` becomes one
``--flag``: its type (a choice's enum, so ``--help`` lists the choices and Click refuses others;
a folder as a ``Path``), its declarations (``--augment/--no-augment``), its help text with unit and
default, in the "Trial" panel of ``--help``. Every option defaults to None, "not given": the
command's (or the study file's) own value then holds.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bopsweep.trial.settings import OPTIONS, SETTINGS, Setting

PANEL_TRIAL = "Trial"  # the settings of every trial (the other panels: bopsweep.cli.options)


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """The options that were given, as plain values (enum members as strings, paths as str)."""
    out = {}
    for name, value in values.items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        if value is not None:
            out[name] = value
    return out


def _annotation(setting: Setting) -> Any:
    """``Annotated[T | None, typer.Option(...)]`` of one setting."""
    kind: Any = setting.choices or (Path if setting.path else setting.kind)
    option = typer.Option(
        *setting.flags,
        help=setting.help_text(),
        metavar=setting.metavar,
        rich_help_panel=PANEL_TRIAL,
        show_default=False,
    )
    return Annotated[kind | None, option]


class _Given:
    def given(self) -> dict[str, Any]:
        """The settings given on the command line, as plain values."""
        return plain(vars(self))


if TYPE_CHECKING:  # what the commands read of it by name; the rest through given()

    class TrialOptions(_Given):
        device: str | None
        data_dir: Path | None
        download: bool | None

        def __init__(self, **given: Any) -> None: ...

else:
    TrialOptions = make_dataclass(
        "TrialOptions",
        [(name, _annotation(SETTINGS[name]), field(default=None)) for name in OPTIONS],
        bases=(_Given,),
        namespace={
            "__doc__": 'Settings of every trial. None means "not given": the command\'s (or '
            "study file's) own.",
            "__module__": __name__,
        },
    )
