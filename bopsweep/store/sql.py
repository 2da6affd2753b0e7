"""SQL the store shares: an INSERT that keeps stored rows, a transaction that begins at once
(SQLite's write lock before the first read), a study's user attributes read and set in one."""

from __future__ import annotations

import json
from typing import Any

# sqlalchemy: imported where used, as a trial process loads this module


def insert_ignore(table: Any, dialect: str) -> Any:
    """An INSERT that keeps a row already stored under the same (trial, start, epoch)."""
    keys = ["trial_id", "trial_start", "epoch"]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy import insert

    return insert(table).prefix_with("IGNORE")


def begin_now(conn: Any) -> None:
    """Begin ``conn``'s transaction now, on SQLite: pysqlite (legacy transaction control, the
    default up to Python 3.15) begins one only before an INSERT, UPDATE or DELETE, so each
    CREATE, DROP and ALTER before it was committed on its own. SQLAlchemy's commit and rollback
    end this one (pysqlite ends any transaction open); PostgreSQL's DDL is transactional."""
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock first: no other writer between


def study_attrs_table(sa: Any) -> Any:
    """Optuna's table of study user attributes (its values JSON text), for SQL in a
    transaction of bopsweep's own (Optuna's storage API commits each call on its own)."""
    return sa.table(
        "study_user_attributes",
        sa.column("study_id", sa.Integer),
        sa.column("key", sa.String),
        sa.column("value_json", sa.Text),
    )


def read_study_attrs(conn: Any, study_id: int) -> dict[str, Any]:
    """A study's user attributes (decoded), read in ``conn``'s transaction."""
    import sqlalchemy as sa

    table = study_attrs_table(sa)
    query = sa.select(table.c.key, table.c.value_json).where(table.c.study_id == study_id)
    return {key: json.loads(value) for key, value in conn.execute(query)}


def set_study_attr(conn: Any, study_id: int, key: str, value: Any) -> None:
    """Set a study's user attribute ``key`` in ``conn``'s transaction (replacing any value)."""
    import sqlalchemy as sa

    table = study_attrs_table(sa)
    where = (table.c.study_id == study_id, table.c.key == key)
    conn.execute(sa.delete(table).where(*where))
    conn.execute(sa.insert(table).values(study_id=study_id, key=key, value_json=json.dumps(value)))


STATE_INDEX = "ix_bopsweep_trials_state"


def ensure_state_index(engine: Any) -> None:
    """An index of Optuna's ``trials`` table by (study, state, id), by which a driver reads the
    trials that started or finished since its last look (:mod:`bopsweep.driver.progress`).
    Made by the driver, once per database; Optuna ignores it, and a database without it
    (Optuna may rebuild the table as it upgrades its schema) reads the same, slower. Several
    drivers may make it at the same moment: the one that loses finds it made."""
    import sqlalchemy as sa

    def made() -> bool:
        return STATE_INDEX in {i["name"] for i in sa.inspect(engine).get_indexes("trials")}

    if made():
        return
    columns = (sa.Column(name, sa.Integer) for name in ("study_id", "state", "trial_id"))
    trials = sa.Table("trials", sa.MetaData(), *columns)
    try:
        with engine.begin() as conn:
            sa.Index(STATE_INDEX, trials.c.study_id, trials.c.state, trials.c.trial_id).create(
                conn, checkfirst=True
            )
    except sa.exc.DatabaseError:
        if not made():
            raise
