"""Migrations: each runs in its own transaction, and on PostgreSQL an index is built without
blocking the writes intake and the worker keep making to the table meanwhile."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from frontdesk.db.engine import sync_url
from frontdesk.db.migrate import alembic_config, head_revision, upgrade_to_head
from tests.conftest import POSTGRES_URL

# A write that takes webhook_events' ROW EXCLUSIVE lock, as every insert or update does.
WRITE = text("UPDATE webhook_events SET attempts = attempts WHERE id = -1")


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("FRONTDESK_TEST_DATABASE_URL is not set")
    server = make_url(sync_url(POSTGRES_URL))
    name = f"frontdesk_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    with engine.connect() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def migration_waiting(connection: Connection) -> bool:
    """Some other session of this database waits on a lock: the migration, behind the holder."""
    waiting = connection.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
    ).scalar_one()
    return bool(waiting)


def test_a_fresh_database_migrates_to_head_and_again_to_nothing_new(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/frontdesk.db"

    upgrade_to_head(url)
    upgrade_to_head(url)

    engine = create_engine(url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert version == head_revision()


@pytest.mark.postgres
def test_the_claim_index_is_built_while_other_transactions_keep_writing(
    empty_postgres: str,
) -> None:
    engine = create_engine(sync_url(empty_postgres))
    migrate_to(engine, "0004")
    holder = engine.connect()
    holder.execute(WRITE)  # an open transaction that wrote: the index build must wait for it
    migration = threading.Thread(target=migrate_to, args=(engine, "0005"))
    migration.start()
    try:
        with engine.connect() as watcher:
            deadline = time.monotonic() + 20
            while not migration_waiting(watcher):
                assert time.monotonic() < deadline, "the migration never reached its index"
                time.sleep(0.05)

        with engine.connect() as writer:
            writer.execute(text("SET lock_timeout = '2s'"))
            try:
                writer.execute(WRITE)
            except OperationalError:
                pytest.fail("a write waited on the index build (CREATE INDEX without CONCURRENTLY)")
            writer.commit()
    finally:
        holder.rollback()
        holder.close()
        migration.join(30)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        indexes = set(
            connection.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'webhook_events'")
            ).scalars()
        )
    engine.dispose()
    assert version == "0005"
    assert {"ix_webhook_events_claim", "ix_webhook_events_finished"} <= indexes
    assert "ix_webhook_events_due" not in indexes


@pytest.mark.postgres
def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again(
    empty_postgres: str,
) -> None:
    engine = create_engine(sync_url(empty_postgres))
    migrate_to(engine, "0004")
    with engine.begin() as connection:
        # What a cancelled CREATE INDEX CONCURRENTLY leaves: the name taken, the index invalid.
        connection.execute(text("CREATE INDEX ix_webhook_events_claim ON webhook_events (status)"))
        connection.execute(
            text(
                "UPDATE pg_index SET indisvalid = false "
                "WHERE indexrelid = 'ix_webhook_events_claim'::regclass"
            )
        )

    migrate_to(engine, "0005")

    with engine.connect() as connection:
        valid, definition = connection.execute(
            text(
                "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indexrelid = 'ix_webhook_events_claim'::regclass"
            )
        ).one()
    engine.dispose()
    assert valid
    assert "(status, available_at, id)" in definition
