"""The routing step every doctor-bound handler shares, and what happens to an unknown page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import hash_identifier, write_audit
from frontdesk.db.engine import transaction
from frontdesk.db.tables import audit_logs, webhook_events
from frontdesk.db.tenancy import system_transaction
from frontdesk.errors import FrontdeskError
from frontdesk.graph.client import INSTAGRAM_LOGIN, SendTarget
from frontdesk.handlers.context import HandlerContext, event_item, member_id
from frontdesk.inbox.queue import FAILED, ClaimedEvent, EventOutcome
from frontdesk.logs import get_logger
from frontdesk.routing.resolve import resolve_doctor_for_candidates

log = get_logger(__name__)

UNKNOWN_PAGE = "unknown_page"
FALLBACK_SENT = "fallback_reply_sent"
_NOTE_EVENT_DOCTOR = (
    update(webhook_events)
    .where(webhook_events.c.id == bindparam("event_id"))
    .values(doctor_id=bindparam("routed_to"))
)


@dataclass(frozen=True)
class Route:
    doctor_id: str
    page_id: str


def page_candidates(event: ClaimedEvent, *, is_echo: bool) -> list[str | None]:
    """entry.id first, then the account's own side of the item: recipient, or sender for echoes."""
    item = event_item(event)
    own_side = member_id(item, "sender" if is_echo else "recipient")
    return [event.page_id, own_side]


async def route_event(
    context: HandlerContext, event: ClaimedEvent, *, is_echo: bool
) -> Route | None:
    async with system_transaction(context.engine) as connection:
        found = await resolve_doctor_for_candidates(
            connection, page_candidates(event, is_echo=is_echo), event.correlation_id
        )
        if found:
            # Known from here on, even if the work fails later and the event ends dead.
            await connection.execute(
                _NOTE_EVENT_DOCTOR, {"event_id": event.id, "routed_to": found[0]}
            )
    return Route(doctor_id=found[0], page_id=found[1]) if found else None


async def fail_unknown_page(
    context: HandlerContext, event: ClaimedEvent, *, fallback_recipient: str | None
) -> EventOutcome:
    """No patient, no conversation, no dead letter: failed/unknown_page, audited by page hash.

    `fallback_recipient` is who gets the operator's fallback reply, if one is configured.
    """
    page_hash = hash_identifier(event.page_id or "")
    fallback_sent = await _send_fallback_reply(context, event, fallback_recipient)
    async with transaction(context.engine) as connection:
        await write_audit(
            connection,
            now=context.clock.now(),
            resource_type="webhook",
            resource_id=str(event.id),
            action="webhook_processed",
            status="failure",
            correlation_id=event.correlation_id,
            error_message=UNKNOWN_PAGE,
            metadata={
                "event_id": event.id,
                "provider": event.provider,
                "page_id_hash": page_hash,
                "fallback_reply_sent": fallback_sent,
            },
        )
    log.info(
        "event_unrouted",
        event_id=event.id,
        page_id_hash=page_hash,
        correlation_id=event.correlation_id,
    )
    return EventOutcome(status=FAILED, reason=UNKNOWN_PAGE)


async def _send_fallback_reply(
    context: HandlerContext, event: ClaimedEvent, recipient: str | None
) -> bool:
    """At most once per event, replays included: the audit row of the send is the record."""
    fallback = context.fallback_reply
    if fallback is None or not recipient or not event.page_id:
        return False
    async with transaction(context.engine) as connection:
        if await _fallback_already_sent(connection, event.id):
            return False
    try:
        await context.graph.send_text(
            SendTarget(login_kind=INSTAGRAM_LOGIN, account_id=event.page_id),
            recipient_id=recipient,
            text=fallback.text,
            access_token=fallback.access_token,
        )
    except FrontdeskError as error:  # best effort: an unknown page is failed either way
        log.warning("fallback_reply_failed", event_id=event.id, error_class=type(error).__name__)
        return False
    async with transaction(context.engine) as connection:
        await write_audit(
            connection,
            now=context.clock.now(),
            resource_type="webhook",
            resource_id=str(event.id),
            action=FALLBACK_SENT,
            status="success",
            correlation_id=event.correlation_id,
            metadata={"event_id": event.id},
        )
    return True


async def _fallback_already_sent(connection: AsyncConnection, event_id: int) -> bool:
    row = (
        await connection.execute(
            select(audit_logs.c.id).where(
                audit_logs.c.resource_type == "webhook",
                audit_logs.c.resource_id == str(event_id),
                audit_logs.c.action == FALLBACK_SENT,
            )
        )
    ).first()
    return row is not None
