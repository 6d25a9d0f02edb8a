"""Accounts of doctors and operators: creation, invites, and sign-in that slows down guessing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import write_audit
from frontdesk.auth.passwords import hash_password, password_matches
from frontdesk.auth.secrets import TokenFactory, new_secret, secret_hash
from frontdesk.db.tables import accounts, invites
from frontdesk.errors import FrontdeskError
from frontdesk.ids import IdFactory, new_id

DOCTOR = "doctor"
OPERATOR = "operator"
INVITE_LIFETIME = timedelta(hours=72)
FREE_ATTEMPTS = 5
MAX_LOCK = timedelta(minutes=15)


class AccountExistsError(FrontdeskError):
    """An account with that email already exists."""


@dataclass(frozen=True)
class SignInRefused:
    """Why a sign-in failed. A value, not an exception: the failure count must be committed."""

    reason: str
    retry_after: int | None = None


WRONG_CREDENTIALS = SignInRefused("email or password is wrong")


class InviteInvalidError(FrontdeskError):
    """The invite is unknown, used or expired."""


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    role: str
    doctor_id: str | None


def _account(row: Any) -> Account:
    return Account(id=row.id, email=row.email, role=row.role, doctor_id=row.doctor_id)


async def create_account(
    connection: AsyncConnection,
    *,
    email: str,
    role: str,
    now: datetime,
    doctor_id: str | None = None,
    password: str | None = None,
    make_id: IdFactory = new_id,
) -> Account:
    """A doctor's account is tied to the doctor row; an operator's to none."""
    account = Account(id=make_id(), email=email.strip().lower(), role=role, doctor_id=doctor_id)
    try:
        async with connection.begin_nested():
            await connection.execute(
                accounts.insert().values(
                    id=account.id,
                    email=account.email,
                    role=role,
                    doctor_id=doctor_id,
                    password_hash=hash_password(password) if password else None,
                    failed_sign_ins=0,
                    created_at=now,
                )
            )
    except IntegrityError as exc:
        raise AccountExistsError("an account with that email already exists") from exc
    await write_audit(
        connection,
        now=now,
        resource_type="account",
        resource_id=account.id,
        action="account_created",
        status="success",
        doctor_id=doctor_id,
        metadata={"role": role},
    )
    return account


async def create_invite(
    connection: AsyncConnection,
    account_id: str,
    *,
    now: datetime,
    make_token: TokenFactory = new_secret,
) -> str:
    """A one-time token to set the account's password, valid for 72 hours."""
    token = make_token()
    await connection.execute(
        invites.insert().values(
            token_hash=secret_hash(token),
            account_id=account_id,
            created_at=now,
            expires_at=now + INVITE_LIFETIME,
        )
    )
    return token


def invite_link(public_url: str, token: str) -> str:
    """The page where the invited person sets a password."""
    return f"{public_url.rstrip('/')}/invite/{token}"


async def accept_invite(
    connection: AsyncConnection, *, token: str, password: str, now: datetime
) -> Account:
    invite = (
        await connection.execute(
            select(invites).where(invites.c.token_hash == secret_hash(token)).with_for_update()
        )
    ).first()
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        raise InviteInvalidError("this invite link is unknown, used or expired")
    password_hash = hash_password(password)
    await connection.execute(
        update(invites).where(invites.c.token_hash == invite.token_hash).values(used_at=now)
    )
    await connection.execute(
        update(accounts)
        .where(accounts.c.id == invite.account_id)
        .values(password_hash=password_hash, failed_sign_ins=0, locked_until=None)
    )
    account = await get_account(connection, invite.account_id)
    assert account is not None
    return account


async def sign_in(
    connection: AsyncConnection, *, email: str, password: str, now: datetime
) -> Account | SignInRefused:
    """After five failures in a row, each further attempt waits twice as long (up to 15 min)."""
    row = (
        await connection.execute(
            select(accounts).where(accounts.c.email == email.strip().lower()).with_for_update()
        )
    ).first()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        wait = int((row.locked_until - now).total_seconds()) + 1
        return SignInRefused("too many failed sign-ins; try again later", retry_after=wait)
    if not password_matches(row.password_hash if row else None, password) or row is None:
        if row is not None:
            await _count_failure(connection, row.id, row.failed_sign_ins + 1, now)
        return WRONG_CREDENTIALS
    await connection.execute(
        update(accounts)
        .where(accounts.c.id == row.id)
        .values(failed_sign_ins=0, locked_until=None, last_sign_in_at=now)
    )
    return _account(row)


async def _count_failure(
    connection: AsyncConnection, account_id: str, failures: int, now: datetime
) -> None:
    locked_until = None
    if failures >= FREE_ATTEMPTS:
        lock = timedelta(seconds=2 ** (failures - FREE_ATTEMPTS + 1))
        locked_until = now + min(lock, MAX_LOCK)
    await connection.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(failed_sign_ins=failures, locked_until=locked_until)
    )
    await write_audit(
        connection,
        now=now,
        resource_type="account",
        resource_id=account_id,
        action="sign_in_failed",
        status="failure",
        metadata={"failures": failures},
    )


async def get_account(connection: AsyncConnection, account_id: str) -> Account | None:
    row = (await connection.execute(select(accounts).where(accounts.c.id == account_id))).first()
    return _account(row) if row else None


async def find_account_for_doctor(connection: AsyncConnection, doctor_id: str) -> Account | None:
    row = (
        await connection.execute(select(accounts).where(accounts.c.doctor_id == doctor_id))
    ).first()
    return _account(row) if row else None
