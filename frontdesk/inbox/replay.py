"""Replaying finished events on an operator's word: queue them again, and audit every replay.

The operator's JSON API and the operator's pages both replay through here, so a replay is audited
the same way whichever door it came through. The caller wakes the worker after committing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import write_audit
from frontdesk.inbox.events import list_event_ids
from frontdesk.inbox.queue import DEAD, replay_event


async def replay_audited(
    connection: AsyncConnection, event_id: int, *, now: datetime, correlation_id: str
) -> bool:
    """Queue one finished event again and audit it; False when it is unknown or still open."""
    if not await replay_event(connection, event_id, now):
        return False
    await write_audit(
        connection,
        now=now,
        resource_type="webhook",
        resource_id=str(event_id),
        action="event_replayed",
        status="success",
        correlation_id=correlation_id,
        metadata={"event_id": event_id},
    )
    return True


async def replay_each(
    connection: AsyncConnection, event_ids: Iterable[int], *, now: datetime, correlation_id: str
) -> tuple[list[int], list[int]]:
    """Replay each id once, in the order given; returns (replayed, skipped: unknown or open)."""
    replayed: list[int] = []
    skipped: list[int] = []
    for event_id in dict.fromkeys(event_ids):
        done = await replay_audited(connection, event_id, now=now, correlation_id=correlation_id)
        (replayed if done else skipped).append(event_id)
    return replayed, skipped


async def replay_all_dead(
    connection: AsyncConnection, *, now: datetime, correlation_id: str
) -> int:
    """Replay every dead event (locked first on PostgreSQL); returns how many were queued."""
    count = 0
    for event_id in await list_event_ids(connection, status=DEAD, for_update=True):
        if await replay_audited(connection, event_id, now=now, correlation_id=correlation_id):
            count += 1
    return count
