"""Sign-in sessions behind an HttpOnly cookie, each with its own CSRF token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.auth.accounts import Account, get_account
from frontdesk.auth.secrets import TokenFactory, new_secret, secret_hash
from frontdesk.db.tables import sessions

SESSION_LIFETIME = timedelta(days=14)


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str


async def start_session(
    connection: AsyncConnection,
    account_id: str,
    *,
    now: datetime,
    make_token: TokenFactory = new_secret,
) -> tuple[str, str]:
    """Returns (cookie value, CSRF token); only the cookie's hash is stored."""
    token, csrf_token = make_token(), make_token()
    await connection.execute(
        sessions.insert().values(
            token_hash=secret_hash(token),
            account_id=account_id,
            csrf_token=csrf_token,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    return token, csrf_token


async def resolve_session(
    connection: AsyncConnection, token: str, *, now: datetime
) -> Session | None:
    row = (
        await connection.execute(
            select(sessions).where(sessions.c.token_hash == secret_hash(token))
        )
    ).first()
    if row is None or row.expires_at <= now:
        return None
    account = await get_account(connection, row.account_id)
    return Session(account=account, csrf_token=row.csrf_token) if account else None


async def end_session(connection: AsyncConnection, token: str) -> None:
    await connection.execute(sessions.delete().where(sessions.c.token_hash == secret_hash(token)))
