"""Async engine creation for SQLite (embedded) and PostgreSQL, and the transaction helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class DatabaseUnavailableError(Exception):
    """The database could not be reached or stayed locked past the allowed wait."""


class TransactionConflictError(DatabaseUnavailableError):
    """PostgreSQL aborted the transaction to break a deadlock or a serialization conflict;
    running the same work again is the remedy."""


CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def async_url(database_url: str) -> URL:
    """Map the settings' plain URL to the async driver SQLAlchemy should use."""
    url = make_url(database_url)
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    return url


def sync_url(database_url: str) -> URL:
    """The same database through a synchronous driver (migrations)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite")
    return url.set(drivername="postgresql+psycopg")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


# How long one statement waits for SQLite's write lock, or for a PostgreSQL connection.
DATABASE_WAIT_SECONDS = 5.0


def create_engine(
    database_url: str,
    *,
    busy_timeout_seconds: float = DATABASE_WAIT_SECONDS,
    role: str | None = None,
) -> AsyncEngine:
    """An engine whose parameters never appear in error messages (they may hold patient data).

    On PostgreSQL, `role` is the role every connection acts as: one that does not own the
    tables, so that row-level security applies to it.
    """
    url = async_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, busy_timeout_seconds)
    engine = create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"connect_timeout": max(1, int(busy_timeout_seconds))},
    )
    if role:
        _act_as_role(engine, role)
    return engine


def _act_as_role(engine: AsyncEngine, role: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _set_role(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET ROLE "{role}"')
        cursor.close()


def ensure_sqlite_directory(url: URL) -> None:
    """SQLite creates the file but not its folder (`./var/` on a fresh checkout)."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def _create_sqlite_engine(url: URL, busy_timeout_seconds: float) -> AsyncEngine:
    ensure_sqlite_directory(url)
    engine = create_async_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": busy_timeout_seconds},
    )
    busy_ms = int(busy_timeout_seconds * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # One writer at a time: take the write lock up front instead of failing on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One committed unit of work; connection and lock failures become DatabaseUnavailableError."""
    try:
        async with engine.begin() as connection:
            yield connection
    except (OperationalError, DBAPIError) as exc:
        name = type(exc.orig).__name__ if exc.orig else ""
        if getattr(exc.orig, "sqlstate", None) in CONFLICT_SQLSTATES:
            raise TransactionConflictError(name) from exc
        if _is_unavailable(exc):
            raise DatabaseUnavailableError(name) from exc
        raise
    except OSError as exc:
        raise DatabaseUnavailableError(type(exc).__name__) from exc


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
