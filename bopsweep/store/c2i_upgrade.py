"""Upgrade 1 of the store's schema (:mod:`bopsweep.store.schema`): a study written by
bopsweep 0.1 (version 0) to what 0.2 stores.

Two meanings changed:

* **C2I**, the *correlation to initialization* of Liu et al. (ICML 2021, arXiv:2106.11309), is
  the share of binary weights whose sign is still the initial one (:mod:`bopsweep.trial.flips`);
  0.1 stored its complement (the share that had changed) under the same names, ``c2i`` and
  ``c2i_<layer>``;
* a two-step run's **best epoch** counts its binary-weight epochs only
  (:mod:`bopsweep.trial.best`); 0.1 counted step 1's real-kernel epochs too.

A study of version 1 or later holds 0.2's meanings (0.2.0 marked it by :data:`C2I_ATTR` alone,
which upgrade 1 still sets). The upgrade rewrites the study's epoch rows' C2I and its finished
two-step trials' ``best_*``/``step1_best_*`` attributes in the one transaction that also bumps
the version, so a study never mixes the two meanings, and a kill leaves it as it was (converted
next time, never twice). Read-only commands convert what they read of a study of version 0
(:mod:`bopsweep.trial.legacy_c2i`; :func:`bopsweep.store.legacy_reads.legacy_bests`) and change
nothing.

A trial folder's ``metrics.csv`` is converted as its run resumes
(:meth:`bopsweep.trial.run_dir.RunDir.open`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from bopsweep.attr_keys import BEST_KEYS, BEST_VAL_ACC, C2I_ATTR, SPEC_ATTR
from bopsweep.store.sql import read_study_attrs, set_study_attr
from bopsweep.store.trial_config import has_config, study_base, trial_config
from bopsweep.trial.best import best_epochs
from bopsweep.trial.legacy_c2i import C2I_MEANING, complement_row

# sqlalchemy: imported where used, as a trial process loads this module


def two_step_bests(
    trial_attrs: Mapping[int, Mapping[str, Any]],
    base: Mapping[str, Any],
    rows: Mapping[int, list[dict[str, Any]]],
) -> dict[int, dict[str, Any]]:
    """For each finished two-step trial (trial id → its user attributes; ``base``: the
    study's base configuration), its best epochs as 0.2 counts them, from its epoch rows
    (trial id → rows): the attributes to replace (:data:`BEST_KEYS`)."""
    out = {}
    for tid, attrs in trial_attrs.items():
        if BEST_VAL_ACC not in attrs or not has_config(attrs) or not rows.get(tid):
            continue
        try:
            split = trial_config(attrs, base).get("two_step")
        except Exception:  # a configuration bopsweep cannot read: not ours to change
            continue
        if split:
            ordered = sorted(rows[tid], key=lambda r: r["epoch"])
            out[tid] = best_epochs(ordered, split)
    return out


def to_schema_1(conn: Any, epochs: Any, study_id: int) -> None:
    """Upgrade 1 (:mod:`bopsweep.store.schema`), in ``conn``'s transaction: study
    ``study_id``'s epoch rows (table ``epochs``) with the paper's C2I, its two-step trials'
    best epochs counted over binary-weight epochs, and :data:`C2I_ATTR` set (which bopsweep
    0.2.0 reads as this version)."""
    import sqlalchemy as sa

    if sa.inspect(conn).has_table(epochs.name):
        rows = _convert_rows(sa, conn, epochs, study_id)
        _convert_bests(sa, conn, study_id, rows)
    set_study_attr(conn, study_id, C2I_ATTR, C2I_MEANING)


def _convert_rows(sa: Any, conn: Any, epochs: Any, study_id: int) -> list[tuple[Any, ...]]:
    """The study's epoch rows with C2I complemented, written back; returned as (trial id,
    trial start, epoch, row)."""
    rows = conn.execute(
        sa.select(
            epochs.c.id, epochs.c.trial_id, epochs.c.trial_start, epochs.c.epoch, epochs.c.data
        ).where(epochs.c.study_id == study_id)
    ).all()
    out, changed = [], []
    for row_id, tid, start, epoch, data in rows:
        old = json.loads(data)
        new = complement_row(old)
        if new != old:
            changed.append({"row_id": row_id, "new": json.dumps(new)})
        out.append((tid, start, epoch, new))
    if changed:
        conn.execute(
            sa.update(epochs)
            .where(epochs.c.id == sa.bindparam("row_id"))
            .values(data=sa.bindparam("new")),
            changed,
        )
    return out


def _convert_bests(sa: Any, conn: Any, study_id: int, rows: Iterable[tuple[Any, ...]]) -> None:
    """The finished two-step trials' best epochs, counted again over binary-weight epochs."""
    spec = read_study_attrs(conn, study_id).get(SPEC_ATTR)
    if spec is None:
        return
    trials = sa.table("trials", sa.column("trial_id", sa.Integer),
                      sa.column("study_id", sa.Integer),
                      sa.column("datetime_start", sa.DateTime))  # fmt: skip
    starts = dict(
        conn.execute(
            sa.select(trials.c.trial_id, trials.c.datetime_start).where(
                trials.c.study_id == study_id
            )
        ).all()
    )
    by_trial: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tid, start, epoch, row in rows:
        if tid in starts and start == starts[tid]:  # rows of the trial as it is now
            by_trial[tid].append({**row, "epoch": epoch})
    tattrs = sa.table("trial_user_attributes", sa.column("trial_id", sa.Integer),
                      sa.column("key", sa.String), sa.column("value_json", sa.Text))  # fmt: skip
    stored: dict[int, dict[str, Any]] = defaultdict(dict)
    query = sa.select(tattrs.c.trial_id, tattrs.c.key, tattrs.c.value_json)
    for tid, key, value in conn.execute(query.where(tattrs.c.trial_id.in_(list(by_trial)))):
        stored[tid][key] = json.loads(value)
    base = study_base({SPEC_ATTR: spec})
    for tid, bests in two_step_bests(stored, base, by_trial).items():
        conn.execute(sa.delete(tattrs).where(tattrs.c.trial_id == tid, tattrs.c.key.in_(BEST_KEYS)))
        conn.execute(
            sa.insert(tattrs),
            [{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in bests.items()],
        )
