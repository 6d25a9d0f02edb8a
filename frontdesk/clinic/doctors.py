"""Doctors: creating and listing the clinic's practitioners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import write_audit
from frontdesk.db.tables import doctors
from frontdesk.errors import FrontdeskError
from frontdesk.ids import IdFactory, new_id


class DoctorExistsError(FrontdeskError):
    """A doctor with that email already exists."""


class DoctorNotFoundError(FrontdeskError):
    """No doctor has that id."""


@dataclass(frozen=True)
class Doctor:
    id: str
    name: str
    email: str
    created_at: datetime


async def create_doctor(
    connection: AsyncConnection,
    *,
    name: str,
    email: str,
    now: datetime,
    make_id: IdFactory = new_id,
) -> Doctor:
    doctor = Doctor(id=make_id(), name=name.strip(), email=email.strip().lower(), created_at=now)
    if not doctor.name or "@" not in doctor.email:
        raise FrontdeskError("a doctor needs a name and an email address")
    try:
        async with connection.begin_nested():
            await connection.execute(
                doctors.insert().values(
                    id=doctor.id, name=doctor.name, email=doctor.email, created_at=now
                )
            )
    except IntegrityError as exc:
        raise DoctorExistsError("a doctor with that email already exists") from exc
    await write_audit(
        connection,
        now=now,
        resource_type="doctor",
        resource_id=doctor.id,
        action="doctor_created",
        status="success",
        doctor_id=doctor.id,
    )
    return doctor


async def get_doctor(connection: AsyncConnection, doctor_id: str) -> Doctor:
    row = (await connection.execute(select(doctors).where(doctors.c.id == doctor_id))).first()
    if row is None:
        raise DoctorNotFoundError("no doctor has that id")
    return Doctor(id=row.id, name=row.name, email=row.email, created_at=row.created_at)


async def list_doctors(connection: AsyncConnection) -> list[Doctor]:
    rows = await connection.execute(select(doctors).order_by(doctors.c.created_at, doctors.c.id))
    return [
        Doctor(id=row.id, name=row.name, email=row.email, created_at=row.created_at) for row in rows
    ]
