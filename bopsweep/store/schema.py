"""The store schema's version: what a bopsweep study's attributes and metric rows mean, numbered,
and the upgrades that take a study from each version to the next.

* version 0: bopsweep 0.1 (no mark);
* version 1: C2I the share of signs kept, a two-step run's best epoch over its binary-weight
  epochs (:mod:`bopsweep.store.c2i_upgrade`). bopsweep 0.2.0 marked it by
  :data:`~bopsweep.attr_keys.C2I_ATTR` alone, read here as version 1.

A study carries its version in :data:`~bopsweep.attr_keys.SCHEMA_ATTR`, written when it is made.
A writing command that opens an older study applies each upgrade above its version in order
(:func:`upgrade`), each in **one** transaction that also writes the version it reaches: a kill
leaves the study wholly at some version, and the next writer goes on from there, never applying
an upgrade twice. Read-only commands change nothing: they read every older version as the
current one (each reader knows what an older version stored, e.g.
:func:`~bopsweep.store.legacy_reads.of_0_1`). A study of a version newer than this bopsweep knows
was written by a newer bopsweep: writing commands refuse it in one line, read-only ones read it
as best they can and say so (:func:`check_readable`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bopsweep.attr_keys import C2I_ATTR, SCHEMA_ATTR, SPEC_ATTR
from bopsweep.errors import UserError
from bopsweep.store.c2i_upgrade import to_schema_1
from bopsweep.store.sql import begin_now, read_study_attrs, set_study_attr
from bopsweep.trial.legacy_c2i import C2I_MEANING


@dataclass(frozen=True)
class Upgrade:
    """One step of the schema: ``apply(conn, epochs, study_id)`` takes a study of version
    ``version - 1`` to ``version`` inside ``conn``'s transaction (``epochs``: the epoch table)."""

    version: int
    what: str
    apply: Callable[[Any, Any, int], None]


UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(1, "C2I as the share of signs kept (0.1 stored the share flipped); a two-step "
               "run's best epoch over its binary-weight epochs", to_schema_1),
)  # fmt: skip


class NewerSchema(UserError):
    """A study written by a newer bopsweep than this one: no writing command touches it."""


def current_version() -> int:
    """The version this bopsweep writes: its last upgrade's."""
    return UPGRADES[-1].version if UPGRADES else 0


def schema_version(user_attrs: Mapping[str, Any], name: str | None = None) -> int:
    """A study's schema version, from its user attributes: the stored one; else 1 for a study of
    bopsweep 0.2.0 (C2I marked), 0 for one of 0.1 (a definition, no mark), and the current one
    for a study bopsweep did not make (nothing of bopsweep's to read differently). A stored
    value that is no whole number (another tool wrote it) is one line naming study ``name``."""
    stored = user_attrs.get(SCHEMA_ATTR)
    if stored is not None:
        if isinstance(stored, int) and not isinstance(stored, bool) and stored >= 0:
            return stored
        which = f"study {name!r}" if name is not None else "a study"
        raise UserError(
            f"{which}: its store schema version ({SCHEMA_ATTR}) is {str(stored)[:40]!r}, not a "
            "whole number (written by another tool?)"
        )
    if user_attrs.get(C2I_ATTR) == C2I_MEANING:
        return 1
    return 0 if SPEC_ATTR in user_attrs else current_version()


def newer_message(name: str, version: int) -> str:
    return (
        f"study {name!r} was written by a newer bopsweep (store schema version {version}; this "
        f"one knows up to {current_version()}); upgrade bopsweep"
    )


def check_readable(user_attrs: Mapping[str, Any], name: str, readonly: bool) -> None:
    """Before a command uses study ``name``: one of a newer version is refused for a command
    that writes (:class:`NewerSchema`); a read-only one reads it as best it can, after a line
    on stderr saying so."""
    version = schema_version(user_attrs, name)
    if version <= current_version():
        return
    if not readonly:
        raise NewerSchema(newer_message(name, version))
    print(f"bopsweep: {newer_message(name, version)}; read as this one can", file=sys.stderr)


def upgrade(engine: Any, epochs: Any, study_id: int, name: str) -> list[int]:
    """Bring study ``study_id`` (named ``name``) to the current version: each upgrade above its
    stored version in order, each in one transaction that writes the version it reaches
    (checked inside it: a writer racing this one finds the study upgraded, never twice). A
    study of 0.2.0 (no version stored) gets its version written. The versions reached, in
    order; :class:`NewerSchema` (nothing written) for a study of a newer bopsweep."""
    reached: list[int] = []
    while True:
        with engine.begin() as conn:
            begin_now(conn)  # SQLite: the write lock before the version is read
            attrs = read_study_attrs(conn, study_id)
            version = schema_version(attrs, name)
            if version > current_version():
                raise NewerSchema(newer_message(name, version))
            if version == current_version():
                if attrs.get(SCHEMA_ATTR) != version:
                    set_study_attr(conn, study_id, SCHEMA_ATTR, version)
                return reached
            step = UPGRADES[version]  # numbered 1, 2, …: the one from ``version``
            step.apply(conn, epochs, study_id)
            set_study_attr(conn, study_id, SCHEMA_ATTR, step.version)
        reached.append(step.version)
