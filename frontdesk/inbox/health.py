"""How the queue is doing: events by status, the oldest waiting event, and finished events per
ten minutes (processed, and failed or dead) for the operator's health page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.db.tables import webhook_events
from frontdesk.inbox.queue import DEAD, FAILED, OPEN_STATUSES, PROCESSED, QUEUED

BUCKET = timedelta(minutes=10)
WINDOW = timedelta(hours=6)
FAILURE_STATUSES = (FAILED, DEAD)


@dataclass(frozen=True)
class Bucket:
    """Events that finished in [start, end)."""

    start: datetime
    end: datetime
    processed: int
    failures: int

    @property
    def processed_per_minute(self) -> float:
        return self.processed / (self.end - self.start).total_seconds() * 60


@dataclass(frozen=True)
class QueueHealth:
    by_status: dict[str, int]
    oldest_queued_at: datetime | None
    oldest_queued_age: timedelta | None
    buckets: list[Bucket]

    @property
    def depth(self) -> int:
        """Events waiting or being worked on."""
        return sum(self.by_status.get(status, 0) for status in OPEN_STATUSES)

    @property
    def dead(self) -> int:
        return self.by_status.get(DEAD, 0)


async def count_by_status(connection: AsyncConnection) -> dict[str, int]:
    rows = await connection.execute(
        select(webhook_events.c.status, func.count()).group_by(webhook_events.c.status)
    )
    return {row[0]: int(row[1]) for row in rows}


async def oldest_queued_at(connection: AsyncConnection) -> datetime | None:
    oldest: datetime | None = (
        await connection.execute(
            select(func.min(webhook_events.c.received_at)).where(webhook_events.c.status == QUEUED)
        )
    ).scalar()
    return oldest


def bucket_edges(now: datetime) -> list[datetime]:
    """Bucket boundaries on the ten-minute marks of UTC; the last bucket holds `now`."""
    base = datetime(now.year, now.month, now.day, tzinfo=UTC)
    into_day = now.astimezone(UTC) - base
    end = base + (into_day // BUCKET + 1) * BUCKET
    count = WINDOW // BUCKET
    return [end - (count - index) * BUCKET for index in range(count + 1)]


async def finished_per_bucket(connection: AsyncConnection, *, now: datetime) -> list[Bucket]:
    """Processed and failed-or-dead events per ten minutes over the last six hours, oldest first.

    The bucket is worked out in the database (one CASE over the boundaries, portable to SQLite
    and PostgreSQL), so only one row per bucket and status comes back.
    """
    edges = bucket_edges(now)
    finished_at = webhook_events.c.finished_at
    bucket = case(
        *((finished_at < edge, index) for index, edge in enumerate(edges[1:-1])),
        else_=len(edges) - 2,
    )
    finished = (
        select(bucket.label("bucket"), webhook_events.c.status)
        .where(
            webhook_events.c.status.in_((PROCESSED, *FAILURE_STATUSES)),
            finished_at >= edges[0],
            finished_at < edges[-1],
        )
        .subquery()
    )
    rows = await connection.execute(
        select(finished.c.bucket, finished.c.status, func.count()).group_by(
            finished.c.bucket, finished.c.status
        )
    )
    processed = [0] * (len(edges) - 1)
    failures = [0] * (len(edges) - 1)
    for index, status, count in rows:
        counts = processed if status == PROCESSED else failures
        counts[int(index)] += int(count)
    return [
        Bucket(start=start, end=end, processed=processed[index], failures=failures[index])
        for index, (start, end) in enumerate(pairwise(edges))
    ]


async def queue_health(connection: AsyncConnection, *, now: datetime) -> QueueHealth:
    oldest = await oldest_queued_at(connection)
    return QueueHealth(
        by_status=await count_by_status(connection),
        oldest_queued_at=oldest,
        oldest_queued_age=max(now - oldest, timedelta(0)) if oldest is not None else None,
        buckets=await finished_per_bucket(connection, now=now),
    )
