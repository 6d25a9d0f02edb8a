"""API tokens a doctor creates for automation: shown once, stored hashed, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import write_audit
from frontdesk.auth.secrets import TokenFactory, new_secret, secret_hash
from frontdesk.db.tables import api_tokens
from frontdesk.ids import IdFactory, new_id

TOKEN_PREFIX = "fdt_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


async def create_api_token(
    connection: AsyncConnection,
    *,
    doctor_id: str,
    name: str,
    now: datetime,
    make_id: IdFactory = new_id,
    make_token: TokenFactory = new_secret,
) -> tuple[ApiToken, str]:
    """Returns the token record and the token itself, which is never shown again."""
    token = TOKEN_PREFIX + make_token()
    record = ApiToken(id=make_id(), name=name, created_at=now, last_used_at=None, revoked_at=None)
    await connection.execute(
        api_tokens.insert().values(
            id=record.id,
            doctor_id=doctor_id,
            name=name,
            token_hash=secret_hash(token),
            created_at=now,
        )
    )
    await write_audit(
        connection,
        now=now,
        resource_type="api_token",
        resource_id=record.id,
        action="api_token_created",
        status="success",
        doctor_id=doctor_id,
    )
    return record, token


async def list_api_tokens(connection: AsyncConnection, doctor_id: str) -> list[ApiToken]:
    rows = await connection.execute(
        select(api_tokens)
        .where(api_tokens.c.doctor_id == doctor_id)
        .order_by(api_tokens.c.created_at, api_tokens.c.id)
    )
    return [
        ApiToken(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


async def revoke_api_token(
    connection: AsyncConnection, *, doctor_id: str, token_id: str, now: datetime
) -> bool:
    result = await connection.execute(
        update(api_tokens)
        .where(
            api_tokens.c.id == token_id,
            api_tokens.c.doctor_id == doctor_id,
            api_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    if result.rowcount:
        await write_audit(
            connection,
            now=now,
            resource_type="api_token",
            resource_id=token_id,
            action="api_token_revoked",
            status="success",
            doctor_id=doctor_id,
        )
    return bool(result.rowcount)


async def resolve_api_token(
    connection: AsyncConnection, token: str, *, now: datetime
) -> str | None:
    """The doctor id a live token belongs to."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = (
        await connection.execute(
            select(api_tokens.c.id, api_tokens.c.doctor_id).where(
                api_tokens.c.token_hash == secret_hash(token), api_tokens.c.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    await connection.execute(
        update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=now)
    )
    return str(row.doctor_id)
