"""Throwaway databases: SQLite files in the run directory, PostgreSQL databases created and dropped.

PostgreSQL databases are named `bench_<pid>_<n>` so that a run only ever drops its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _connect(admin_url: str) -> object:
    import psycopg

    url = make_url(admin_url)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def postgres_available(admin_url: str | None = None) -> str | None:
    """None when PostgreSQL answers on loopback; otherwise why not."""
    url = make_url(admin_url or postgres_admin_url())
    if url.host not in (None, "127.0.0.1", "localhost", "::1"):
        return "BENCH_POSTGRES_URL must point at loopback"
    try:
        connection = _connect(admin_url or postgres_admin_url())
    except Exception as error:
        return f"PostgreSQL not reachable: {type(error).__name__}"
    connection.close()  # type: ignore[attr-defined]
    return None


@dataclass
class Databases:
    """Creates databases for one run and removes them all on close()."""

    run_dir: Path
    admin_url: str = field(default_factory=postgres_admin_url)
    _created: list[str] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def sqlite(self, name: str) -> str:
        path = self.run_dir / f"{name}-{next(self._counter)}.db"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()
        return f"sqlite:///{path}"

    def postgres(self, *, template: str | None = None) -> str:
        name = f"bench_{os.getpid()}_{next(self._counter)}"
        connection = _connect(self.admin_url)
        try:
            clause = f' TEMPLATE "{template}"' if template else ""
            connection.execute(f'CREATE DATABASE "{name}"{clause}')  # type: ignore[attr-defined]
        finally:
            connection.close()  # type: ignore[attr-defined]
        self._created.append(name)
        return str(make_url(self.admin_url).set(database=name).render_as_string(False))

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name is None or name not in self._created:
            return
        connection = _connect(self.admin_url)
        try:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        finally:
            connection.close()  # type: ignore[attr-defined]
        self._created.remove(name)

    def close(self) -> None:
        for name in list(self._created):
            with contextlib.suppress(Exception):
                self.drop(str(make_url(self.admin_url).set(database=name)))


def database_name(url: str) -> str:
    return make_url(url).database or ""
