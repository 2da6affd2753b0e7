"""The one-time upgrade of bopsweep 0.1.0's metric tables, whose rows lack their trial's start
time (so a later trial reusing a deleted one's id would take its rows)."""

from __future__ import annotations

from typing import Any

from bopsweep.store.sql import begin_now, insert_ignore

# sqlalchemy: imported where used, as a trial process loads this module


def legacy_tables(engine: Any, present: set[str], names: tuple[str, ...]) -> set[str]:
    """Metric tables of bopsweep 0.1.0 databases, whose rows lack their trial's start time."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    return {
        name
        for name in names
        if name in present and "trial_start" not in {c["name"] for c in inspector.get_columns(name)}
    }


def upgrade_legacy_tables(engine: Any, present: set[str], *tables: Any) -> bool:
    """Give the rows of a legacy metric table their trial's start time, in one transaction;
    whether there was one to upgrade.

    The table is renamed ``<name>_legacy`` and its rows copied into a new one. An older bopsweep
    committed the rename before the copy, so one killed then left the rows there and an empty
    new table (or none, or one without its indexes): that upgrade is finished here, the copy
    keeping any row written since. Rows whose trial is gone (deleted by another tool) are
    dropped: they could only ever attach to a later trial that reused the id. Reads Optuna's
    ``trials`` table directly, once.
    """
    import sqlalchemy as sa

    names = tuple(t.name for t in tables)
    unfinished = {f"{n}_legacy" for n in names} & present
    if not legacy_tables(engine, present, names) and not unfinished:
        return False
    trials = sa.table(
        "trials", sa.column("trial_id", sa.Integer), sa.column("datetime_start", sa.DateTime)
    )
    with engine.begin() as conn:
        begin_now(conn)
        present = set(sa.inspect(conn).get_table_names())  # as of the lock: another may have
        legacy = legacy_tables(conn, present, names)
        for table in tables:
            if table.name in legacy:
                old = sa.Table(table.name, sa.MetaData(), autoload_with=conn)
                for index in old.indexes:  # the new table's indexes take these names
                    index.drop(conn)
                conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {table.name}_legacy"))
            elif f"{table.name}_legacy" not in present:
                continue
            table.create(conn, checkfirst=True)
            for index in table.indexes:  # where a killed upgrade made the table alone
                index.create(conn, checkfirst=True)
            old = sa.Table(f"{table.name}_legacy", sa.MetaData(), autoload_with=conn)
            columns = ["study_id", "trial_id", "trial_start", "epoch", "data"]
            rows = (
                sa.select(
                    old.c.study_id, old.c.trial_id, trials.c.datetime_start, old.c.epoch, old.c.data
                )
                .select_from(old.join(trials, trials.c.trial_id == old.c.trial_id))
                .where(sa.true())  # SQLite: a join before ON CONFLICT needs a WHERE
                .order_by(old.c.id)
            )
            conn.execute(insert_ignore(table, conn.dialect.name).from_select(columns, rows))
            old.drop(conn)
    return True


def unfinished_upgrade(engine: Any, table: Any, present: set[str]) -> str | None:
    """For a read-only open of ``table`` whose upgrade was left half done (only a writer may
    finish it): its rows are still in ``<name>_legacy``, the table to read as a 0.1.0 one
    while the new one is empty or missing (that name, else None); rows in both are not merged
    here, and a line says so."""
    import sys

    import sqlalchemy as sa

    old = f"{table.name}_legacy"
    if old not in present:
        return None
    empty = table.name not in present
    if not empty:
        with engine.connect() as conn:
            empty = conn.execute(sa.select(table.c.id).limit(1)).first() is None
    if empty:
        return old
    print(
        f"bopsweep: the rows of {old} are not shown: an interrupted upgrade left "
        "them there; the next command that writes to the database finishes it",
        file=sys.stderr,
    )
    return None
