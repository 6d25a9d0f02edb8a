"""Instagram connections: which account belongs to which doctor, its token and its state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import hash_identifier, write_audit
from frontdesk.crypto import Keyring
from frontdesk.db.tables import doctor_instagram
from frontdesk.db.tenancy import scope_to_doctor, scope_to_system
from frontdesk.errors import FrontdeskError
from frontdesk.graph.client import FACEBOOK_LOGIN, INSTAGRAM_LOGIN, SendTarget
from frontdesk.ids import IdFactory, new_id

ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"
DISCONNECTED = "disconnected"


class PageOwnedByAnotherDoctorError(FrontdeskError):
    """The Instagram account (or Facebook Page) is already linked to a different doctor."""


class ConnectionNotFoundError(FrontdeskError):
    """The doctor has no Instagram connection."""


# Run for every event a worker handles: built once.
_CONNECTION_OF_DOCTOR = select(doctor_instagram).where(
    doctor_instagram.c.doctor_id == bindparam("match_doctor")
)
_TOUCH = {
    column: update(doctor_instagram)
    .where(doctor_instagram.c.doctor_id == bindparam("match_doctor"))
    .values({column: bindparam("at")})
    for column in ("last_webhook_at", "last_send_at")
}


@dataclass(frozen=True)
class InstagramConnection:
    id: str
    doctor_id: str
    instagram_page_id: str
    facebook_page_id: str | None
    username: str | None
    login_kind: str
    status: str
    token_expires_at: datetime | None
    connected_at: datetime
    last_webhook_at: datetime | None
    last_send_at: datetime | None

    @property
    def send_target(self) -> SendTarget:
        """Facebook-Login connections send as the Page; Instagram-Login ones as the account."""
        if self.login_kind == FACEBOOK_LOGIN and self.facebook_page_id:
            return SendTarget(login_kind=FACEBOOK_LOGIN, account_id=self.facebook_page_id)
        return SendTarget(login_kind=INSTAGRAM_LOGIN, account_id=self.instagram_page_id)


def token_associated_data(connection_id: str) -> bytes:
    return f"doctor_instagram:{connection_id}".encode()


async def link_instagram(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    doctor_id: str,
    instagram_page_id: str,
    access_token: str,
    now: datetime,
    facebook_page_id: str | None = None,
    username: str | None = None,
    login_kind: str = INSTAGRAM_LOGIN,
    token_expires_at: datetime | None = None,
    make_id: IdFactory = new_id,
) -> InstagramConnection:
    """Link (or re-link) the doctor's account; refuses an account owned by another doctor.

    Checking other doctors' connections needs the system scope; the rest is the doctor's own.
    """
    await scope_to_doctor(connection, doctor_id)
    await scope_to_system(connection)
    await _claim_pages(connection, doctor_id, instagram_page_id, facebook_page_id)
    existing = await find_connection(connection, doctor_id)
    connection_id = existing.id if existing else make_id()
    values = {
        "instagram_page_id": instagram_page_id,
        "facebook_page_id": facebook_page_id,
        "username": username,
        "login_kind": login_kind,
        "access_token_encrypted": keyring.encrypt_text(
            access_token, token_associated_data(connection_id)
        ),
        "token_expires_at": token_expires_at,
        "token_issued_at": now,
        "status": ACTIVE,
        "disconnected_at": None,
        "updated_at": now,
    }
    if existing:
        await connection.execute(
            update(doctor_instagram)
            .where(
                doctor_instagram.c.id == connection_id, doctor_instagram.c.doctor_id == doctor_id
            )
            .values(**values)
        )
    else:
        await connection.execute(
            doctor_instagram.insert().values(
                id=connection_id, doctor_id=doctor_id, connected_at=now, **values
            )
        )
    await write_audit(
        connection,
        now=now,
        resource_type="instagram_connection",
        resource_id=connection_id,
        action="instagram_connected",
        status="success",
        doctor_id=doctor_id,
        metadata={"page_id_hash": hash_identifier(instagram_page_id), "login_kind": login_kind},
    )
    linked = await find_connection(connection, doctor_id)
    assert linked is not None
    return linked


async def _claim_pages(
    connection: AsyncConnection,
    doctor_id: str,
    instagram_page_id: str,
    facebook_page_id: str | None,
) -> None:
    """Refuse ids another doctor holds; release ids another doctor disconnected from."""
    ids = [page for page in (instagram_page_id, facebook_page_id) if page]
    others = await connections_elsewhere(connection, doctor_id, ids)
    if any(row.status != DISCONNECTED for row in others):
        raise PageOwnedByAnotherDoctorError("that account is already linked to another doctor")
    if others:
        await connection.execute(
            doctor_instagram.delete().where(doctor_instagram.c.id.in_([row.id for row in others]))
        )


async def connections_elsewhere(
    connection: AsyncConnection, doctor_id: str, page_ids: list[str]
) -> Sequence[Row[Any, Any]]:
    """Other doctors' connections holding any of these ids (needs the system scope)."""
    holds_ids = or_(
        doctor_instagram.c.instagram_page_id.in_(page_ids),
        doctor_instagram.c.facebook_page_id.in_(page_ids),
    )
    rows = await connection.execute(
        select(doctor_instagram.c.id, doctor_instagram.c.status).where(
            holds_ids, doctor_instagram.c.doctor_id != doctor_id
        )
    )
    return rows.all()


async def unlink_instagram(
    connection: AsyncConnection, *, doctor_id: str, now: datetime
) -> InstagramConnection:
    """Delete the token and mark the connection disconnected; its events route as unknown."""
    await scope_to_doctor(connection, doctor_id)
    existing = await find_connection(connection, doctor_id)
    if existing is None or existing.status == DISCONNECTED:
        raise ConnectionNotFoundError("the doctor has no Instagram connection")
    await connection.execute(
        update(doctor_instagram)
        .where(doctor_instagram.c.id == existing.id, doctor_instagram.c.doctor_id == doctor_id)
        .values(
            status=DISCONNECTED, access_token_encrypted=None, disconnected_at=now, updated_at=now
        )
    )
    await write_audit(
        connection,
        now=now,
        resource_type="instagram_connection",
        resource_id=existing.id,
        action="instagram_disconnected",
        status="success",
        doctor_id=doctor_id,
        metadata={"page_id_hash": hash_identifier(existing.instagram_page_id)},
    )
    return existing


async def find_connection(
    connection: AsyncConnection, doctor_id: str
) -> InstagramConnection | None:
    row = await _connection_row(connection, doctor_id)
    return None if row is None else _connection_from_row(row)


async def find_connection_and_token(
    connection: AsyncConnection, keyring: Keyring, *, doctor_id: str
) -> tuple[InstagramConnection, str | None] | None:
    """The doctor's connection and its decrypted access token (None once cleared), in one read."""
    row = await _connection_row(connection, doctor_id)
    if row is None:
        return None
    return _connection_from_row(row), _decrypt_token(keyring, row)


async def _connection_row(connection: AsyncConnection, doctor_id: str) -> Any:
    return (await connection.execute(_CONNECTION_OF_DOCTOR, {"match_doctor": doctor_id})).first()


async def load_access_token(
    connection: AsyncConnection, keyring: Keyring, *, doctor_id: str
) -> str | None:
    row = await _connection_row(connection, doctor_id)
    return None if row is None else _decrypt_token(keyring, row)


def _decrypt_token(keyring: Keyring, row: Any) -> str | None:
    if row.access_token_encrypted is None:
        return None
    return keyring.decrypt_text(row.access_token_encrypted, token_associated_data(row.id))


def _connection_from_row(row: Any) -> InstagramConnection:
    return InstagramConnection(
        id=row.id,
        doctor_id=row.doctor_id,
        instagram_page_id=row.instagram_page_id,
        facebook_page_id=row.facebook_page_id,
        username=row.username,
        login_kind=row.login_kind,
        status=row.status,
        token_expires_at=row.token_expires_at,
        connected_at=row.connected_at,
        last_webhook_at=row.last_webhook_at,
        last_send_at=row.last_send_at,
    )


async def mark_needs_reauth(
    connection: AsyncConnection, *, doctor_id: str, now: datetime, correlation_id: str | None
) -> None:
    result = await connection.execute(
        update(doctor_instagram)
        .where(doctor_instagram.c.doctor_id == doctor_id, doctor_instagram.c.status == ACTIVE)
        .values(status=NEEDS_REAUTH, updated_at=now)
    )
    if result.rowcount:
        await write_audit(
            connection,
            now=now,
            resource_type="instagram_connection",
            action="instagram_needs_reauth",
            status="failure",
            doctor_id=doctor_id,
            correlation_id=correlation_id,
            error_message="token_rejected",
        )


async def touch_connection(
    connection: AsyncConnection,
    *,
    doctor_id: str,
    last_webhook_at: datetime | None = None,
    last_send_at: datetime | None = None,
) -> None:
    for column, at in (("last_webhook_at", last_webhook_at), ("last_send_at", last_send_at)):
        if at is not None:
            await connection.execute(_TOUCH[column], {"match_doctor": doctor_id, "at": at})
