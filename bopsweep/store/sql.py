"""SQL the metric tables share: an INSERT that keeps stored rows, and a transaction that
begins at once (SQLite's write lock before the first read)."""

from __future__ import annotations

from typing import Any


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
