"""Store deliveries and their queued events durably, many requests sharing one commit."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import stamina
from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frontdesk.audit import audit_row, write_audits
from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.db.engine import (
    DatabaseUnavailableError,
    TransactionConflictError,
    transaction,
)
from frontdesk.db.statements import insert_or_skip
from frontdesk.db.tables import webhook_deliveries, webhook_events
from frontdesk.logs import get_logger
from frontdesk.webhooks.split import PROVIDER, SplitDelivery, SplitEvent

log = get_logger(__name__)

MAX_GROUP = 128
MAX_WAITING = 2_000
MAX_WAITING_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class IntakeResult:
    delivery_id: int
    events: int
    duplicates: int


@dataclass
class _Pending:
    body: bytes
    split: SplitDelivery
    correlation_id: str
    received_at: datetime
    done: asyncio.Future[IntakeResult] = field(repr=False)
    abandoned: bool = False


def delivery_associated_data(body_sha256: str) -> bytes:
    return f"webhook_deliveries:{body_sha256}".encode()


def event_associated_data(provider: str, event_key: str) -> bytes:
    return f"webhook_events:{provider}:{event_key}".encode()


class IntakeWriter:
    """Queues intake requests and commits them in groups; each caller waits for its own commit.

    A group that fails is retried one delivery per transaction, so one bad delivery cannot take
    the others down with it. A caller whose commit fails, or does not finish in `timeout`,
    gets DatabaseUnavailableError and answers 503: Meta redelivers and duplicates are absorbed.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        clock: Clock,
        *,
        timeout: float,
        on_commit: Callable[[], None] | None = None,
    ):
        self._engine = engine
        self._on_commit = on_commit
        self._keyring = keyring
        self._clock = clock
        self._timeout = timeout
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=MAX_WAITING)
        self._waiting_bytes = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the writer, or start it again if it ever stopped."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="intake-writer")
            self._task.add_done_callback(_log_unexpected_stop)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def store(self, body: bytes, split: SplitDelivery, correlation_id: str) -> IntakeResult:
        """Return once the delivery and its events are committed.

        While the database is slow the wait line is bounded (in requests and bytes); beyond it,
        and past `timeout`, the answer is DatabaseUnavailableError at once, never a pile-up.
        """
        await self.start()
        if self._queue.full() or self._waiting_bytes + len(body) > MAX_WAITING_BYTES:
            raise DatabaseUnavailableError("intake is backed up")
        pending = _Pending(
            body=body,
            split=split,
            correlation_id=correlation_id,
            received_at=self._clock.now(),
            done=asyncio.get_running_loop().create_future(),
        )
        self._queue.put_nowait(pending)
        self._waiting_bytes += len(body)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.done), self._timeout)
        except TimeoutError as exc:
            pending.abandoned = True
            raise DatabaseUnavailableError("intake commit timed out") from exc

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            self._waiting_bytes -= sum(len(pending.body) for pending in group)
            # A caller that gave up already answered 503; Meta will deliver it again.
            live = [pending for pending in group if not pending.abandoned]
            if live:
                await self._commit_group(live)

    async def _commit_group(self, group: list[_Pending]) -> None:
        try:
            results = await self._write_group(group)
        except DatabaseUnavailableError as exc:
            for pending in group:
                self._fail(pending, exc)
            return
        except Exception as exc:
            # Not an outage: find the one delivery that cannot be stored, keep the others.
            if len(group) == 1:
                self._fail(group[0], exc)
                return
            for pending in group:
                await self._commit_group([pending])
            return
        for pending, result in zip(group, results, strict=True):
            if not pending.done.done():
                pending.done.set_result(result)
        if self._on_commit is not None:
            self._on_commit()

    @stamina.retry(on=TransactionConflictError, attempts=3, wait_initial=0.01, wait_max=0.2)
    async def _write_group(self, group: list[_Pending]) -> list[IntakeResult]:
        """One statement per table for the whole group: its deliveries, their new events, the
        counts of deliveries that brought duplicates, their audit rows.

        A conflict is another writer's deadlock or serialization failure (see _insert_events
        for why it should be rare); the same work simply runs again.
        """
        # Hashing, encrypting and serialising happen before the transaction, so SQLite's write
        # lock is held for the statements only.
        hashes = [hashlib.sha256(pending.body).hexdigest() for pending in group]
        deliveries = self._delivery_rows(group, hashes)
        events = self._new_event_rows(group, hashes)
        async with transaction(self._engine) as connection:
            delivery_ids = await self._insert_deliveries(connection, deliveries)
            inserted = await self._insert_events(connection, events, delivery_ids)
            results = [
                IntakeResult(
                    delivery_id=delivery_id,
                    events=inserted[delivery_id],
                    duplicates=len(pending.split.events) - inserted[delivery_id],
                )
                for pending, delivery_id in zip(group, delivery_ids, strict=True)
            ]
            await self._count_duplicates(connection, results)
            await write_audits(
                connection,
                [
                    _audit_row(pending, result, body_sha256)
                    for pending, result, body_sha256 in zip(group, results, hashes, strict=True)
                ],
            )
        return results

    def _fail(self, pending: _Pending, error: Exception) -> None:
        log.warning(
            "intake_commit_failed",
            correlation_id=pending.correlation_id,
            error_class=type(error).__name__,
        )
        if not pending.done.done() and not pending.abandoned:
            pending.done.set_exception(DatabaseUnavailableError("intake commit failed"))

    def _delivery_rows(self, group: list[_Pending], hashes: list[str]) -> list[dict[str, object]]:
        """Stored as if every event were new; `_count_duplicates` corrects those that were not."""
        return [
            {
                "provider": PROVIDER,
                "received_at": pending.received_at,
                "correlation_id": pending.correlation_id,
                "body_sha256": body_sha256,
                "body_size": len(pending.body),
                "body_encrypted": self._keyring.encrypt(
                    pending.body, delivery_associated_data(body_sha256)
                ),
                "status": "accepted" if pending.split.recognized else "unrecognized",
                "event_count": len(pending.split.events),
                "duplicate_count": 0,
            }
            for pending, body_sha256 in zip(group, hashes, strict=True)
        ]

    async def _insert_deliveries(
        self, connection: AsyncConnection, rows: list[dict[str, object]]
    ) -> list[int]:
        result = await connection.execute(
            webhook_deliveries.insert().returning(
                webhook_deliveries.c.id, sort_by_parameter_order=True
            ),
            rows,
        )
        return [int(delivery_id) for delivery_id in result.scalars()]

    async def _count_duplicates(
        self, connection: AsyncConnection, results: list[IntakeResult]
    ) -> None:
        """Correct the counts of deliveries that brought events already stored."""
        corrections = [
            {"row_id": result.delivery_id, "events": result.events, "dups": result.duplicates}
            for result in results
            if result.duplicates
        ]
        if corrections:
            await connection.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == bindparam("row_id"))
                .values(event_count=bindparam("events"), duplicate_count=bindparam("dups")),
                corrections,
            )

    def _new_event_rows(
        self, group: list[_Pending], hashes: list[str]
    ) -> list[tuple[int, dict[str, object]]]:
        """The group's events, each with the position in `group` of the delivery that owns it.

        Deliveries go in the order of their body hashes, each in its own order: Meta redelivers
        the same bytes, so two writers holding the same deliveries take their keys in the same
        order and cannot deadlock, and events of one delivery keep their order (ties between
        equal timestamps are broken by id). The first delivery to carry a key owns the event.
        """
        rows: dict[str, tuple[int, dict[str, object]]] = {}
        for _, position in sorted((body_sha256, at) for at, body_sha256 in enumerate(hashes)):
            pending = group[position]
            for event in pending.split.events:
                if event.event_key not in rows:
                    rows[event.event_key] = (position, self._event_row(event, pending))
        return list(rows.values())

    async def _insert_events(
        self,
        connection: AsyncConnection,
        events: list[tuple[int, dict[str, object]]],
        delivery_ids: list[int],
    ) -> Counter[int]:
        """Insert the events not stored yet; return how many each delivery inserted."""
        if not events:
            return Counter()
        rows = [{**row, "delivery_id": delivery_ids[position]} for position, row in events]
        statement = insert_or_skip(
            connection, webhook_events, ["provider", "event_key"], returning=["delivery_id"]
        )
        # executemany: one cached statement, batched by SQLAlchemy in the rows' order.
        result = await connection.execute(statement, rows)
        return Counter(int(delivery_id) for delivery_id in result.scalars())

    def _event_row(self, event: SplitEvent, pending: _Pending) -> dict[str, object]:
        """Every value but the delivery's id, which the insert of the deliveries gives."""
        now = pending.received_at
        return {
            "provider": PROVIDER,
            "event_key": event.event_key,
            "correlation_id": pending.correlation_id,
            "kind": event.kind,
            "page_id": event.page_id,
            "ordering_key": event.ordering_key,
            "occurred_at": _occurred_at(event, now),
            "received_at": now,
            "status": "queued",
            "attempts": 0,
            "available_at": now,
            "payload_encrypted": self._keyring.encrypt(
                json.dumps(event.payload, separators=(",", ":")).encode(),
                event_associated_data(PROVIDER, event.event_key),
            ),
            "updated_at": now,
        }


def _audit_row(pending: _Pending, result: IntakeResult, body_sha256: str) -> dict[str, object]:
    return audit_row(
        now=pending.received_at,
        resource_type="webhook",
        resource_id=str(result.delivery_id),
        action="webhook_received",
        status="success" if pending.split.recognized else "unrecognized",
        correlation_id=pending.correlation_id,
        metadata={
            "provider": PROVIDER,
            "delivery_id": result.delivery_id,
            "body_sha256": body_sha256,
            "body_bytes": len(pending.body),
            "events": result.events,
            "duplicates": result.duplicates,
        },
    )


def _log_unexpected_stop(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("intake_writer_stopped", error_class=type(task.exception()).__name__)


def _occurred_at(event: SplitEvent, received_at: datetime) -> datetime:
    if event.occurred_at_ms is None:
        return received_at
    return datetime.fromtimestamp(event.occurred_at_ms / 1000, UTC)
