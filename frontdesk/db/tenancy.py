"""Row-level security scopes: a transaction works for one doctor, or as the system for routing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frontdesk.db.engine import transaction

APP_ROLE = "frontdesk_app"
# Run at the start of nearly every transaction: built once.
_SCOPE_TO_DOCTOR = text("SELECT set_config('frontdesk.doctor_id', :doctor_id, true)")
_SCOPE_TO_SYSTEM = text("SELECT set_config('frontdesk.system', 'on', true)")


async def scope_to_doctor(connection: AsyncConnection, doctor_id: str) -> None:
    """From here to the end of the transaction, PostgreSQL shows only this doctor's rows."""
    if connection.dialect.name == "postgresql":
        await connection.execute(_SCOPE_TO_DOCTOR, {"doctor_id": doctor_id})


async def scope_to_system(connection: AsyncConnection) -> None:
    """Let this transaction see every doctor's connection (never patient data)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(_SCOPE_TO_SYSTEM)


@asynccontextmanager
async def doctor_transaction(engine: AsyncEngine, doctor_id: str) -> AsyncIterator[AsyncConnection]:
    async with transaction(engine) as connection:
        await scope_to_doctor(connection, doctor_id)
        yield connection


@asynccontextmanager
async def system_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with transaction(engine) as connection:
        await scope_to_system(connection)
        yield connection
