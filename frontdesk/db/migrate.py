"""Bring a database to the newest schema, and tell whether it is there."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.db.engine import ensure_sqlite_directory, sync_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_to_head(database_url: str) -> None:
    """Run every pending migration in one synchronous connection, each in its own transaction."""
    url = sync_url(database_url)
    ensure_sqlite_directory(url)
    engine = create_engine(url, hide_parameters=True)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def is_at_head(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revision)
    return current == head_revision()
