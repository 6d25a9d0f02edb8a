"""The clinic's doctors as an operator sees them: each with the state of their Instagram
connection (never its token or page ids), and inviting a new doctor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.auth.accounts import DOCTOR, Account, create_account
from frontdesk.clinic.connections import NEEDS_REAUTH
from frontdesk.clinic.doctors import Doctor, create_doctor, list_doctors
from frontdesk.db.tables import doctor_instagram


@dataclass(frozen=True)
class ConnectionSummary:
    """What an operator may know of a connection; `updated_at` is when its status last changed
    (or it was re-linked)."""

    status: str
    username: str | None
    connected_at: datetime
    token_expires_at: datetime | None
    last_webhook_at: datetime | None
    last_send_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class RosterEntry:
    doctor: Doctor
    connection: ConnectionSummary | None


SUMMARY_COLUMNS = (
    doctor_instagram.c.doctor_id,
    doctor_instagram.c.status,
    doctor_instagram.c.username,
    doctor_instagram.c.connected_at,
    doctor_instagram.c.token_expires_at,
    doctor_instagram.c.last_webhook_at,
    doctor_instagram.c.last_send_at,
    doctor_instagram.c.updated_at,
)


async def list_roster(connection: AsyncConnection) -> list[RosterEntry]:
    """Every doctor, oldest first, with their connection or None. Other doctors' connections are
    readable only in the system scope (`system_transaction`); tokens are never read."""
    everyone = await list_doctors(connection)
    rows = await connection.execute(select(*SUMMARY_COLUMNS))
    summaries = {
        row.doctor_id: ConnectionSummary(
            status=row.status,
            username=row.username,
            connected_at=row.connected_at,
            token_expires_at=row.token_expires_at,
            last_webhook_at=row.last_webhook_at,
            last_send_at=row.last_send_at,
            updated_at=row.updated_at,
        )
        for row in rows
    }
    return [RosterEntry(doctor=doctor, connection=summaries.get(doctor.id)) for doctor in everyone]


def needing_reauth(roster: list[RosterEntry]) -> list[RosterEntry]:
    """Doctors whose token Meta rejected, longest waiting first."""
    waiting = [
        (entry.connection.updated_at, index, entry)
        for index, entry in enumerate(roster)
        if entry.connection is not None and entry.connection.status == NEEDS_REAUTH
    ]
    return [entry for _since, _index, entry in sorted(waiting)]


async def add_doctor(
    connection: AsyncConnection, *, name: str, email: str, now: datetime
) -> tuple[Doctor, Account]:
    """A new doctor with a sign-in account (no password yet: send an invite).
    Raises DoctorExistsError or AccountExistsError when the email is taken."""
    doctor = await create_doctor(connection, name=name, email=email, now=now)
    account = await create_account(
        connection, email=doctor.email, role=DOCTOR, doctor_id=doctor.id, now=now
    )
    return doctor, account
