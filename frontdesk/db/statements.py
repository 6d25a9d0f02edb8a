"""Dialect-aware statements shared by the repositories: insert-or-skip on a unique key."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


def insert_or_skip(
    connection: AsyncConnection, table: Table, conflict_columns: Sequence[str]
) -> Insert:
    """INSERT … ON CONFLICT (columns) DO NOTHING, for SQLite and PostgreSQL alike."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns)
        )
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
