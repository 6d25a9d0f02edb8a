"""The operator's view of the queue: list events, one event's attempts; ids and metadata only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.audit import hash_identifier
from frontdesk.db.tables import webhook_event_attempts, webhook_events
from frontdesk.inbox.queue import FAILED


@dataclass(frozen=True)
class EventSummary:
    id: int
    kind: str
    status: str
    reason: str | None
    doctor_id: str | None
    attempts: int
    received_at: datetime
    occurred_at: datetime
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        data["occurred_at"] = self.occurred_at.isoformat()
        return data


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error_class: str | None
    error_code: str | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data


SUMMARY_COLUMNS = (
    webhook_events.c.id,
    webhook_events.c.kind,
    webhook_events.c.status,
    webhook_events.c.reason,
    webhook_events.c.doctor_id,
    webhook_events.c.attempts,
    webhook_events.c.received_at,
    webhook_events.c.occurred_at,
    webhook_events.c.last_error,
)


def _summary(row: Any) -> EventSummary:
    return EventSummary(
        id=row.id,
        kind=row.kind,
        status=row.status,
        reason=row.reason,
        doctor_id=row.doctor_id,
        attempts=row.attempts,
        received_at=row.received_at,
        occurred_at=row.occurred_at,
        last_error=row.last_error,
    )


async def list_events(
    connection: AsyncConnection,
    *,
    status: str | None = None,
    limit: int = 50,
    kind: str | None = None,
    doctor_id: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[EventSummary]:
    """Newest first; every filter given must match. `since` and `until` bound `received_at`
    (since inclusive, until exclusive) and must be aware datetimes."""
    statement = select(*SUMMARY_COLUMNS).order_by(webhook_events.c.id.desc()).limit(limit)
    filters = (
        (webhook_events.c.status, status),
        (webhook_events.c.kind, kind),
        (webhook_events.c.doctor_id, doctor_id),
        (webhook_events.c.reason, reason),
    )
    for column, value in filters:
        if value:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(webhook_events.c.received_at >= since)
    if until is not None:
        statement = statement.where(webhook_events.c.received_at < until)
    return [_summary(row) for row in await connection.execute(statement)]


async def list_event_ids(
    connection: AsyncConnection, *, status: str, for_update: bool = False
) -> list[int]:
    """Ids of every event in `status`, oldest first; `for_update` locks them on PostgreSQL so a
    concurrent replay cannot change them before this transaction ends."""
    statement = (
        select(webhook_events.c.id)
        .where(webhook_events.c.status == status)
        .order_by(webhook_events.c.id)
    )
    if for_update and connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    return [int(row.id) for row in await connection.execute(statement)]


@dataclass(frozen=True)
class FailedPageGroup:
    """Failed events of one page id, which is shown only as its hash."""

    page_id_hash: str
    events: int
    first_received_at: datetime
    last_received_at: datetime


async def list_failed_pages(
    connection: AsyncConnection, *, reason: str, limit: int = 100
) -> list[FailedPageGroup]:
    """Failed events with `reason`, grouped by page id; the most recently seen page first."""
    last_received = func.max(webhook_events.c.received_at)
    rows = await connection.execute(
        select(
            webhook_events.c.page_id,
            func.count().label("events"),
            func.min(webhook_events.c.received_at).label("first_received_at"),
            last_received.label("last_received_at"),
        )
        .where(webhook_events.c.status == FAILED, webhook_events.c.reason == reason)
        .group_by(webhook_events.c.page_id)
        .order_by(last_received.desc(), webhook_events.c.page_id)
        .limit(limit)
    )
    return [
        FailedPageGroup(
            page_id_hash=hash_identifier(row.page_id or ""),
            events=int(row.events),
            first_received_at=row.first_received_at,
            last_received_at=row.last_received_at,
        )
        for row in rows
    ]


async def get_event(connection: AsyncConnection, event_id: int) -> EventSummary | None:
    row = (
        await connection.execute(select(*SUMMARY_COLUMNS).where(webhook_events.c.id == event_id))
    ).first()
    return _summary(row) if row else None


async def list_attempts(connection: AsyncConnection, event_id: int) -> list[AttemptRecord]:
    rows = await connection.execute(
        select(webhook_event_attempts)
        .where(webhook_event_attempts.c.event_id == event_id)
        .order_by(webhook_event_attempts.c.attempt, webhook_event_attempts.c.id)
    )
    return [
        AttemptRecord(
            attempt=row.attempt,
            started_at=row.started_at,
            finished_at=row.finished_at,
            outcome=row.outcome,
            error_class=row.error_class,
            error_code=row.error_code,
        )
        for row in rows
    ]
