"""What every handler is given: the database, keyring, clock, reply sender and settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.graph.client import GraphClient
from frontdesk.ids import IdFactory, new_id
from frontdesk.inbox.queue import ClaimedEvent
from frontdesk.replies.sender import ReplySender
from frontdesk.webhooks.split import as_id


@dataclass(frozen=True)
class FallbackReply:
    """The reply sent to a patient who wrote to an account no doctor has connected (optional)."""

    text: str
    access_token: str


@dataclass(frozen=True)
class HandlerContext:
    engine: AsyncEngine
    keyring: Keyring
    clock: Clock
    graph: GraphClient
    sender: ReplySender
    fallback_reply: FallbackReply | None
    keep_lease: Callable[[ClaimedEvent], Awaitable[bool]]
    make_id: IdFactory = new_id


def event_item(event: ClaimedEvent) -> dict[str, Any]:
    """The messaging item (or change value) the event was split from."""
    item = (event.payload or {}).get("item")
    return item if isinstance(item, dict) else {}


def member_id(item: dict[str, Any], member: str) -> str | None:
    """`item[member].id` when it is an id we can store (the splitter's own rule)."""
    value = item.get(member)
    return as_id(value.get("id") if isinstance(value, dict) else None)
