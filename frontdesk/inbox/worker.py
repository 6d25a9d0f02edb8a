"""The worker: claim due events, run their handlers concurrently, and settle each outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from frontdesk.clock import Clock
from frontdesk.db.engine import DatabaseUnavailableError
from frontdesk.errors import PermanentError, TransientError
from frontdesk.inbox.queue import (
    DEAD,
    FAILED,
    RETRY,
    ClaimedEvent,
    EventOutcome,
    EventQueue,
)
from frontdesk.logs import get_logger
from frontdesk.metrics import Metrics

log = get_logger(__name__)

EventHandler = Callable[[ClaimedEvent], Awaitable[EventOutcome]]
CLAIM_BACKOFF_SECONDS = 1.0


@dataclass(frozen=True)
class MaintenanceJob:
    """Periodic work the worker does between events; `run` returns how much it did."""

    name: str
    interval: timedelta
    run: Callable[[], Awaitable[int]]


class Worker:
    """Runs up to `concurrency` events at once. `wake()` lets intake skip the poll delay."""

    def __init__(
        self,
        queue: EventQueue,
        handler: EventHandler,
        *,
        clock: Clock,
        metrics: Metrics,
        concurrency: int,
        poll_seconds: float,
        maintenance: Sequence[MaintenanceJob] = (),
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._clock = clock
        self._metrics = metrics
        self._concurrency = max(1, concurrency)
        self._poll_seconds = poll_seconds
        self._maintenance = list(maintenance)
        self._next_run: dict[str, datetime] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], ClaimedEvent] = {}

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def run(self, *, shutdown_grace: float = 10.0) -> None:
        """Until stop(): then finish in-flight work within the grace period, release the rest."""
        while not self._stopping.is_set():
            claimed = await self._claim_free_slots()
            await self._run_due_maintenance()
            if not claimed:
                await self._wait_for_work()
        await self._drain(shutdown_grace)

    async def run_until_idle(self) -> int:
        """Process everything that is due now, then return how many attempts ran (tests, demo)."""
        attempts = 0
        while True:
            claimed = await self._queue.claim(self._concurrency)
            if not claimed:
                return attempts
            await asyncio.gather(*(self._process(event) for event in claimed))
            attempts += len(claimed)

    async def _claim_free_slots(self) -> int:
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        try:
            claimed = await self._queue.claim(free)
        except Exception as error:
            # Whatever the database says, the loop must live on: back off and try again.
            log.warning("worker_claim_failed", error_class=type(error).__name__)
            await asyncio.sleep(CLAIM_BACKOFF_SECONDS)
            return 0
        for event in claimed:
            task = asyncio.create_task(self._process(event), name=f"event-{event.id}")
            self._in_flight[task] = event
            task.add_done_callback(self._task_done)
        return len(claimed)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wakeup.set()

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
        self._wakeup.clear()

    async def _drain(self, grace: float) -> None:
        if not self._in_flight:
            return
        _done, pending = await asyncio.wait(list(self._in_flight), timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            event = self._in_flight.get(task)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if event is None:
                continue
            try:
                await self._queue.release(event)
            except Exception as error:  # its lease expires and another worker takes it
                log.warning(
                    "event_release_failed", event_id=event.id, error_class=type(error).__name__
                )

    async def _process(self, event: ClaimedEvent) -> None:
        if event.attempt > self._queue.max_attempts:
            # Claimed again after leases kept expiring: whatever runs it kills its worker.
            await self._settle(event, EventOutcome(status=DEAD, reason="lease_expired_repeatedly"))
            return
        outcome = await self._run_handler(event)
        await self._settle(event, outcome)

    async def _run_handler(self, event: ClaimedEvent) -> EventOutcome:
        try:
            return await self._handler(event)
        except TransientError as error:
            return EventOutcome(
                status=RETRY,
                reason=error.reason,
                error_class=type(error).__name__,
                retry_after=error.retry_after,
            )
        except PermanentError as error:
            return EventOutcome(
                status=FAILED, reason=error.reason, error_class=type(error).__name__
            )
        except DatabaseUnavailableError as error:
            return EventOutcome(
                status=RETRY, reason="database_unavailable", error_class=type(error).__name__
            )
        except Exception as error:
            # An unexpected bug is retried like a transient error and ends in the dead letter.
            log.exception("handler_crashed", event_id=event.id, kind=event.kind)
            return EventOutcome(
                status=RETRY, reason="handler_error", error_class=type(error).__name__
            )

    async def _settle(self, event: ClaimedEvent, outcome: EventOutcome) -> None:
        try:
            status = await self._queue.finish(event, outcome)
        except Exception as error:  # its lease expires and the event is tried again
            log.warning("event_finish_failed", event_id=event.id, error_class=type(error).__name__)
            return
        self._metrics.events_finished.labels(status).inc()
        log.info(
            "event_finished",
            event_id=event.id,
            kind=event.kind,
            status=status,
            reason=outcome.reason,
            attempt=event.attempt,
            correlation_id=event.correlation_id,
        )

    async def _run_due_maintenance(self) -> None:
        now = self._clock.now()
        for job in self._maintenance:
            if now < self._next_run.get(job.name, now):
                continue
            self._next_run[job.name] = now + job.interval
            try:
                done = await job.run()
            except Exception as error:  # tried again at the next interval
                log.warning("maintenance_failed", job=job.name, error_class=type(error).__name__)
                continue
            if done:
                log.info("maintenance_done", job=job.name, count=done)
