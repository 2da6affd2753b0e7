"""The one-time conversion of a study's C2I columns to the paper's meaning.

C2I, the *correlation to initialization* of Liu et al. (ICML 2021, arXiv:2106.11309), is the
share of binary weights whose sign is still the initial one (:mod:`bopsweep.flips`). bopsweep
0.2 and earlier stored its complement (the share that had changed) under the same names,
``c2i`` and ``c2i_<layer>``. A study carries :data:`C2I_ATTR` once its rows hold the paper's
value: set when it is made, or when a writing command first opens a study made before. That
conversion rewrites the study's epoch rows and sets the attribute in **one** transaction, so a
study never mixes the two meanings, and a kill leaves it as it was (converted next time, never
twice). Read-only commands convert what they read of a study without the attribute
(:mod:`bopsweep.legacy_c2i`) and change nothing.

A trial folder's ``metrics.csv`` is converted as its run resumes
(:meth:`bopsweep.run_dir.RunDir.open`).
"""

from __future__ import annotations

import json
from typing import Any

from bopsweep.legacy_c2i import C2I_MEANING, complement_row
from bopsweep.store.sql import begin_now

C2I_ATTR = "bopsweep_c2i"  # study user attribute: its rows' c2i is the share of signs kept


def converted(user_attrs: dict[str, Any]) -> bool:
    """Whether a study's stored C2I values are the paper's (see the module's docstring)."""
    return user_attrs.get(C2I_ATTR) == C2I_MEANING


def upgrade_study(engine: Any, epochs: Any, study_id: int) -> bool:
    """Convert study ``study_id``'s epoch rows (table ``epochs``) and set :data:`C2I_ATTR`, in
    one transaction; False if the study was converted already (checked inside it)."""
    import sqlalchemy as sa

    attrs = sa.table(
        "study_user_attributes",
        sa.column("study_id", sa.Integer),
        sa.column("key", sa.String),
        sa.column("value_json", sa.Text),
    )
    with engine.begin() as conn:
        begin_now(conn)
        stored = conn.execute(
            sa.select(attrs.c.value_json).where(
                attrs.c.study_id == study_id, attrs.c.key == C2I_ATTR
            )
        ).scalar()
        if stored is not None and json.loads(stored) == C2I_MEANING:
            return False
        if sa.inspect(conn).has_table(epochs.name):
            rows = conn.execute(
                sa.select(epochs.c.id, epochs.c.data).where(epochs.c.study_id == study_id)
            ).all()
            changed = [
                {"row_id": row_id, "new": json.dumps(new)}
                for row_id, data in rows
                if (new := complement_row(old := json.loads(data))) != old
            ]
            if changed:
                conn.execute(
                    sa.update(epochs)
                    .where(epochs.c.id == sa.bindparam("row_id"))
                    .values(data=sa.bindparam("new")),
                    changed,
                )
        value = json.dumps(C2I_MEANING)
        if stored is None:
            conn.execute(sa.insert(attrs).values(study_id=study_id, key=C2I_ATTR, value_json=value))
        else:  # another tool's value under our name
            conn.execute(
                sa.update(attrs)
                .where(attrs.c.study_id == study_id, attrs.c.key == C2I_ATTR)
                .values(value_json=value)
            )
    return True
