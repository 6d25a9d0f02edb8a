"""Pick the handler for an event's kind; kinds we do not act on are ignored with a reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from frontdesk.handlers.changes import handle_deleted, handle_edit
from frontdesk.handlers.context import HandlerContext
from frontdesk.handlers.echo import handle_echo
from frontdesk.handlers.message import handle_message
from frontdesk.handlers.outbound import (
    MANUAL_REPLY,
    RESUME_REPLIES,
    handle_manual_reply,
    handle_resume_replies,
)
from frontdesk.inbox.queue import FAILED, IGNORED, ClaimedEvent, EventOutcome

Handler = Callable[[HandlerContext, ClaimedEvent], Awaitable[EventOutcome]]

HANDLERS: dict[str, Handler] = {
    "message": handle_message,
    "postback": partial(handle_message, may_reply=False),
    "standby_message": partial(handle_message, may_reply=False),
    "echo": handle_echo,
    "standby_echo": handle_echo,
    "edit": handle_edit,
    "standby_edit": handle_edit,
    "deleted": handle_deleted,
    "standby_deleted": handle_deleted,
    MANUAL_REPLY: handle_manual_reply,
    RESUME_REPLIES: handle_resume_replies,
}

IGNORED_REASONS = {
    "read": "read_receipt",
    "reaction": "reaction_not_stored",
    "referral": "referral_not_handled",
    "optin": "optin_not_handled",
    "comment": "comments_not_handled",
    "mention": "mentions_not_handled",
    "change": "change_field_not_handled",
    "malformed": "malformed_item",
    "other": "unknown_item_kind",
}


async def handle_event(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    """Run the event's handler; the outcome says which final state it reaches (or a retry)."""
    if event.payload is None:
        return EventOutcome(status=FAILED, reason="payload_unavailable")
    handler = HANDLERS.get(event.kind)
    if handler is not None:
        return await handler(context, event)
    kind = event.kind.removeprefix("standby_")
    reason = IGNORED_REASONS.get(kind, "unknown_item_kind")
    if event.kind.startswith("standby_"):
        reason = f"standby:{reason}"
    return EventOutcome(status=IGNORED, reason=reason)
