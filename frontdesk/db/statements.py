"""Dialect-aware statements shared by the repositories: insert-or-skip on a unique key."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


def insert_or_skip(
    connection: AsyncConnection,
    table: Table,
    conflict_columns: Sequence[str],
    *,
    returning: Sequence[str] = (),
) -> Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING [RETURNING …], for SQLite and PostgreSQL
    alike; the values go with the execution. Built once per shape: building a statement costs
    about as much as running it."""
    return _insert_or_skip(
        connection.dialect.name, table, tuple(conflict_columns), tuple(returning)
    )


@cache
def _insert_or_skip(
    dialect: str, table: Table, conflict_columns: tuple[str, ...], returning: tuple[str, ...]
) -> Insert:
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.on_conflict_do_nothing(index_elements=list(conflict_columns))
    if returning:
        return statement.returning(*(table.c[name] for name in returning))
    return statement
