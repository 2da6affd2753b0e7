"""Fencing: a trial's writes are accepted only from the driver that owns its attempt.

A driver that claims a WAITING trial (moves it to RUNNING) gives the attempt an owner: a random
token, stored as the trial's system attribute ``bopsweep_owner``. Another driver can take the
trial over (it judged it stale: no heartbeat for the grace period, e.g. while the owner was
stopped or cut off from the database) by failing it; the owner's late writes must then be
refused, or a trial already failed gathers epochs from a process that lost it. So every metric
write checks, in its own transaction and with the trial's row locked (PostgreSQL: ``SELECT …
FOR UPDATE``, which Optuna's own state change also takes; SQLite: one writer at a time), that
the trial is still RUNNING and still its writer's; a refused write raises :class:`TrialTakenOver`
and the driver abandons the trial (stops its process). The learning curve (intermediate values)
is written in that same transaction; the trial's state and user attributes go through Optuna,
whose storage refuses them once the trial is finished.

Studies are serialized the same way where several drivers may act on one at once: queueing
what is missing, re-queueing, and creating a study each run under :func:`study_lock`, a
PostgreSQL transaction-level advisory lock keyed by the study (SQLite has one driver per
file already: :func:`bopsweep.store.lock.driver_lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

from bopsweep.attr_keys import OWNER_ATTR

# sqlalchemy: imported where used, as a trial process loads this module

LOCK_NAMESPACE = 0x0B0B5EE9  # the first key of bopsweep's advisory locks (two-int form)


class TrialTakenOver(Exception):
    """A write for a trial that is no longer RUNNING under this owner (another driver failed
    and re-queued it): the write was refused, and the caller must abandon the trial."""

    def __init__(self, trial_id: int, state: str | None) -> None:
        super().__init__(f"trial id {trial_id} was taken over (now {state or 'gone'})")
        self.trial_id = trial_id


def new_owner() -> str:
    """A fresh owner token for one attempt of one trial."""
    return secrets.token_hex(16)


def check_owner(conn: Any, trial_id: int, owner: str) -> None:
    """Inside the caller's transaction on ``conn``: lock the trial's row and raise
    :class:`TrialTakenOver` unless it is RUNNING and owned by ``owner``."""
    import sqlalchemy as sa

    lock = "" if conn.dialect.name == "sqlite" else " FOR UPDATE"  # SQLite: one writer anyway
    row = conn.execute(
        sa.text(f"SELECT state FROM trials WHERE trial_id = :t{lock}"), {"t": trial_id}
    ).first()
    state = None if row is None else str(getattr(row[0], "name", row[0]))
    stored = conn.execute(
        sa.text("SELECT value_json FROM trial_system_attributes WHERE trial_id = :t AND key = :k"),
        {"t": trial_id, "k": OWNER_ATTR},
    ).first()
    if state != "RUNNING" or stored is None or json.loads(stored[0]) != owner:
        raise TrialTakenOver(trial_id, state)


def _key(name: str) -> int:
    """A study's second advisory-lock key: a signed 32-bit int from its name (PostgreSQL's
    two-int form, so bopsweep's locks never meet another program's one-bigint ones)."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


@contextlib.contextmanager
def study_lock(engine: Any, study_name: str) -> Iterator[None]:
    """Hold the study's lock (PostgreSQL: ``pg_advisory_xact_lock``) while the block runs:
    what one driver reads of the study and writes because of it (missing configurations
    queued, a study made) is never interleaved with another's. Keyed by the study's name, so
    it also serializes making the study. Other databases: nothing to take (SQLite allows one
    driver per file; MySQL's workers rely on Optuna's atomic claim alone: docs/guarantees.md)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    import sqlalchemy as sa

    with engine.connect() as conn, conn.begin():
        # a driver stopped (SIGSTOP) while it holds the lock must not block the study's other
        # workers: its session is ended by the server after 5 minutes idle in the transaction,
        # and a wait for the lock gives up after 10 (a database error the loop rides out)
        conn.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = '300s'"))
        conn.execute(sa.text("SET LOCAL lock_timeout = '600s'"))
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:a, :b)"),
            {"a": LOCK_NAMESPACE, "b": _key(study_name)},
        )
        yield  # the lock is released when this transaction ends
