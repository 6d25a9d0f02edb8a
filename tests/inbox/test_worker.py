"""The worker: outcomes from handlers, poison events, shutdown, and repeated lease loss."""

from __future__ import annotations

import asyncio

import httpx2
from sqlalchemy import select, update

from frontdesk.app import create_app
from frontdesk.clock import FixedClock
from frontdesk.config import Settings
from frontdesk.db.tables import webhook_events
from frontdesk.inbox.queue import PROCESSED, ClaimedEvent, EventOutcome, EventQueue
from frontdesk.inbox.worker import Worker
from frontdesk.runtime import Runtime
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import add_linked_doctor, unscoped
from tests.inbox.test_queue import PAGE, dm, post_messages


def worker_with(runtime: Runtime, handler: object, *, concurrency: int = 2) -> Worker:
    return Worker(
        runtime.queue,
        handler,  # type: ignore[arg-type]
        clock=runtime.clock,
        metrics=runtime.metrics,
        concurrency=concurrency,
        poll_seconds=0.01,
    )


async def statuses(runtime: Runtime) -> dict[str, tuple[str, int]]:
    async with unscoped(runtime) as connection:
        rows = await connection.execute(select(webhook_events))
        return {row.event_key: (row.status, row.attempts) for row in rows}


async def test_poison_event_ends_dead_without_delaying_other_conversations(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "poison"), dm("2002", "fine"))
    handled: list[str] = []

    async def handler(event: ClaimedEvent) -> EventOutcome:
        if event.event_key == f"message:{PAGE}:poison":
            raise RuntimeError("handler bug with patient text inside")
        handled.append(event.event_key)
        return EventOutcome(status=PROCESSED)

    worker = worker_with(runtime, handler)
    await worker.run_until_idle()
    assert handled == [f"message:{PAGE}:fine"]
    for delay in runtime.settings.retry_delays:
        clock.advance(seconds=delay)
        await worker.run_until_idle()

    result = await statuses(runtime)
    assert result[f"message:{PAGE}:poison"] == ("dead", 4)
    assert result[f"message:{PAGE}:fine"] == ("processed", 1)
    async with unscoped(runtime) as connection:
        last_error = (
            await connection.execute(
                select(webhook_events.c.last_error).where(
                    webhook_events.c.event_key == f"message:{PAGE}:poison"
                )
            )
        ).scalar_one()
    assert last_error == "RuntimeError: handler_error"


async def test_stop_releases_in_flight_work_that_does_not_finish_in_the_grace_period(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "slow"))
    started = asyncio.Event()

    async def handler(event: ClaimedEvent) -> EventOutcome:
        started.set()
        await asyncio.sleep(60)
        return EventOutcome(status=PROCESSED)

    worker = worker_with(runtime, handler)
    running = asyncio.create_task(worker.run(shutdown_grace=0.05))
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(running, 5)

    assert (await statuses(runtime))[f"message:{PAGE}:slow"] == ("queued", 0)


async def test_stop_lets_in_flight_work_finish_within_the_grace_period(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "quick"))
    started = asyncio.Event()

    async def handler(event: ClaimedEvent) -> EventOutcome:
        started.set()
        await asyncio.sleep(0.05)
        return EventOutcome(status=PROCESSED)

    worker = worker_with(runtime, handler)
    running = asyncio.create_task(worker.run(shutdown_grace=5))
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(running, 5)

    assert (await statuses(runtime))[f"message:{PAGE}:quick"] == ("processed", 1)


async def test_event_whose_lease_keeps_expiring_is_buried_instead_of_run_again(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "crasher"))
    async with unscoped(runtime) as connection:
        await connection.execute(update(webhook_events).values(attempts=runtime.queue.max_attempts))
    ran: list[int] = []

    async def handler(event: ClaimedEvent) -> EventOutcome:
        ran.append(event.id)
        return EventOutcome(status=PROCESSED)

    await worker_with(runtime, handler).run_until_idle()

    assert ran == []
    assert (await statuses(runtime))[f"message:{PAGE}:crasher"][0] == "dead"


async def test_embedded_worker_is_woken_by_intake_instead_of_waiting_for_its_poll(
    settings: Settings, clock: FixedClock, fake_graph: FakeGraphApi
) -> None:
    slow_polling = settings.model_copy(update={"worker_poll_seconds": 30.0})
    runtime = Runtime.build(
        slow_polling, clock=clock, graph_transport=httpx2.ASGITransport(app=fake_graph.app)
    )
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    await runtime.start(run_worker=True)
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
        ) as http:
            await asyncio.sleep(0.05)
            await post_messages(http, dm("1001", "wake"))
            for _ in range(500):
                if fake_graph.sends:
                    break
                await asyncio.sleep(0.01)
    finally:
        await runtime.stop()

    assert len(fake_graph.sends) == 1


class FlakyQueue(EventQueue):
    """A queue whose first claim fails the way a broken database connection might."""

    failures = 1

    async def claim(self, limit: int) -> list[ClaimedEvent]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("connection reset in the middle of a claim")
        return await super().claim(limit)


async def test_the_worker_loop_survives_an_unexpected_error_and_keeps_working(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "after-error"))
    queue = FlakyQueue(
        runtime.engine,
        runtime.keyring,
        runtime.clock,
        worker_id="flaky",
        lease_seconds=60,
        retry_delays=[60],
    )
    done = asyncio.Event()

    async def handler(event: ClaimedEvent) -> EventOutcome:
        done.set()
        return EventOutcome(status=PROCESSED)

    worker = Worker(
        queue,
        handler,
        clock=runtime.clock,
        metrics=runtime.metrics,
        concurrency=1,
        poll_seconds=0.01,
    )
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 5)

    assert queue.failures == 0
