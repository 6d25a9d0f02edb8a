"""Keep Instagram-Login tokens alive: refresh those nearing expiry, flag those Meta refuses."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.audit import write_audit
from frontdesk.clinic.connections import (
    ACTIVE,
    load_access_token,
    mark_needs_reauth,
    token_associated_data,
)
from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.db.tables import doctor_instagram
from frontdesk.db.tenancy import doctor_transaction, system_transaction
from frontdesk.graph.client import INSTAGRAM_LOGIN
from frontdesk.graph.oauth import MetaOAuthClient, OAuthStepError
from frontdesk.logs import get_logger

log = get_logger(__name__)

MIN_TOKEN_AGE = timedelta(hours=24)  # Meta refuses to refresh a younger token
REFRESH_WITHIN = timedelta(days=30)
TRY_AGAIN_REASONS = frozenset({"timeout", "unreachable", "malformed_response"})


async def refresh_expiring_tokens(
    engine: AsyncEngine, keyring: Keyring, oauth: MetaOAuthClient, clock: Clock
) -> int:
    """Refresh every active Instagram-Login token at least a day old expiring within 30 days.

    A refusal marks the connection needs_reauth (audited); a network failure leaves it for the
    next run. Returns how many tokens were refreshed.
    """
    now = clock.now()
    async with system_transaction(engine) as connection:
        due = (
            (
                await connection.execute(
                    select(doctor_instagram.c.doctor_id).where(
                        doctor_instagram.c.login_kind == INSTAGRAM_LOGIN,
                        doctor_instagram.c.status == ACTIVE,
                        doctor_instagram.c.token_issued_at <= now - MIN_TOKEN_AGE,
                        doctor_instagram.c.token_expires_at <= now + REFRESH_WITHIN,
                    )
                )
            )
            .scalars()
            .all()
        )
    refreshed = 0
    for doctor_id in due:
        refreshed += await _refresh_one(engine, keyring, oauth, clock, doctor_id)
    return refreshed


async def _refresh_one(
    engine: AsyncEngine, keyring: Keyring, oauth: MetaOAuthClient, clock: Clock, doctor_id: str
) -> int:
    async with doctor_transaction(engine, doctor_id) as connection:
        token = await load_access_token(connection, keyring, doctor_id=doctor_id)
    if token is None:
        return 0
    try:
        fresh = await oauth.refresh_instagram_token(token)
    except OAuthStepError as error:
        if error.reason in TRY_AGAIN_REASONS or (error.status or 0) >= 500:
            log.warning("token_refresh_postponed", reason=error.reason)
            return 0
        async with doctor_transaction(engine, doctor_id) as connection:
            await mark_needs_reauth(
                connection, doctor_id=doctor_id, now=clock.now(), correlation_id=None
            )
        return 0
    now = clock.now()
    async with doctor_transaction(engine, doctor_id) as connection:
        connection_id = (
            await connection.execute(
                select(doctor_instagram.c.id).where(doctor_instagram.c.doctor_id == doctor_id)
            )
        ).scalar_one()
        await connection.execute(
            update(doctor_instagram)
            .where(
                doctor_instagram.c.id == connection_id, doctor_instagram.c.doctor_id == doctor_id
            )
            .values(
                access_token_encrypted=keyring.encrypt_text(
                    fresh.access_token, token_associated_data(connection_id)
                ),
                token_expires_at=fresh.expires_at,
                token_issued_at=now,
                updated_at=now,
            )
        )
        await write_audit(
            connection,
            now=now,
            resource_type="instagram_connection",
            resource_id=connection_id,
            action="instagram_token_refreshed",
            status="success",
            doctor_id=doctor_id,
        )
    return 1
