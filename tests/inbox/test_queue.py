"""The queue over webhook_events: leases, ordering, retries, the dead letter, replay, retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx2
from sqlalchemy import select, update

from frontdesk.clock import FixedClock
from frontdesk.db.tables import webhook_events
from frontdesk.inbox.queue import (
    FAILED,
    PROCESSED,
    RETRY,
    EventOutcome,
    EventQueue,
    purge_expired_payloads,
    replay_dead_events,
    replay_event,
)
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from tests.conftest import post_delivery, recent_ms, unscoped

PAGE = "17841455512340001"


def other_queue(runtime: Runtime, worker_id: str) -> EventQueue:
    return EventQueue(
        runtime.engine,
        runtime.keyring,
        runtime.clock,
        worker_id=worker_id,
        lease_seconds=runtime.settings.lease_seconds,
        retry_delays=runtime.settings.retry_delays,
    )


async def post_messages(client: httpx2.AsyncClient, *items: dict[str, object]) -> None:
    response = await post_delivery(
        client, payloads.delivery(payloads.entry(PAGE, messaging=list(items)))
    )
    assert response.status_code == 200


def dm(sender: str, mid: str, seconds_ago: float = 5) -> dict[str, object]:
    return payloads.message_item(
        sender=sender, recipient=PAGE, mid=mid, text="x", timestamp=recent_ms(seconds_ago)
    )


async def status_of(runtime: Runtime, event_id: int) -> tuple[str, int]:
    async with unscoped(runtime) as connection:
        row = (
            await connection.execute(
                select(webhook_events.c.status, webhook_events.c.attempts).where(
                    webhook_events.c.id == event_id
                )
            )
        ).one()
    return row.status, row.attempts


async def test_a_killed_workers_lease_is_recovered_by_another_worker(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "m1"))
    killed = other_queue(runtime, "killed-worker")
    [claimed] = await killed.claim(10)

    survivor = other_queue(runtime, "survivor")
    assert await survivor.claim(10) == [], "a live lease is not taken over"
    clock.advance(seconds=runtime.settings.lease_seconds + 1)
    [recovered] = await survivor.claim(10)

    assert recovered.id == claimed.id
    assert recovered.attempt == 2
    assert await killed.finish(claimed, EventOutcome(status=PROCESSED)) == "lost_lease"
    assert await survivor.finish(recovered, EventOutcome(status=PROCESSED)) == PROCESSED
    assert await status_of(runtime, claimed.id) == (PROCESSED, 2)


async def test_one_conversation_runs_one_event_at_a_time_while_others_proceed(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "a1", 9), dm("1001", "a2", 5), dm("2002", "b1", 7))

    first = await runtime.queue.claim(10)
    assert sorted(event.event_key for event in first) == [
        f"message:{PAGE}:a1",
        f"message:{PAGE}:b1",
    ]
    assert await runtime.queue.claim(10) == []

    a1 = next(event for event in first if event.event_key == f"message:{PAGE}:a1")
    await runtime.queue.finish(a1, EventOutcome(status=PROCESSED))
    [second] = await runtime.queue.claim(10)
    assert second.event_key == f"message:{PAGE}:a2"


async def test_concurrent_claims_never_hand_out_the_same_event(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, *(dm(str(3000 + n), f"c{n}") for n in range(20)))
    queues = [other_queue(runtime, f"worker-{n}") for n in range(4)]

    batches = await asyncio.gather(*(queue.claim(8) for queue in queues))

    ids = [event.id for batch in batches for event in batch]
    assert len(ids) == len(set(ids)) == 20


async def test_transient_failure_waits_for_the_longer_of_its_delay_and_retry_after(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "r1"))
    [event] = await runtime.queue.claim(1)

    await runtime.queue.finish(
        event, EventOutcome(status=RETRY, reason="rate_limited", retry_after=500)
    )

    clock.advance(seconds=499)
    assert await runtime.queue.claim(1) == []
    clock.advance(seconds=1)
    assert [again.id for again in await runtime.queue.claim(1)] == [event.id]


async def test_permanent_failure_is_failed_and_not_retried(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "p1"))
    [event] = await runtime.queue.claim(1)

    await runtime.queue.finish(event, EventOutcome(status=FAILED, reason="graph_rejected:100"))
    clock.advance(days=1)

    assert await runtime.queue.claim(1) == []
    assert await status_of(runtime, event.id) == (FAILED, 1)


async def test_replay_requeues_finished_events_but_leaves_open_ones_alone(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "x1"), dm("2002", "x2"))
    first, second = await runtime.queue.claim(2)
    await runtime.queue.finish(first, EventOutcome(status=FAILED, reason="unknown_page"))

    async with unscoped(runtime) as connection:
        assert await replay_event(connection, first.id, runtime.clock.now())
        assert not await replay_event(connection, second.id, runtime.clock.now())
        assert not await replay_event(connection, 999_999, runtime.clock.now())

    assert await status_of(runtime, first.id) == ("queued", 0)


async def test_replay_all_dead_requeues_only_dead_events(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await post_messages(client, dm("1001", "d1"), dm("2002", "d2"))
    async with unscoped(runtime) as connection:
        await connection.execute(
            update(webhook_events)
            .where(webhook_events.c.event_key == f"message:{PAGE}:d1")
            .values(status="dead")
        )
        assert await replay_dead_events(connection, runtime.clock.now()) == 1


async def test_retention_clears_old_finished_payloads_and_keeps_the_rows(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "old"), dm("2002", "new"))
    old, new = sorted(
        await runtime.queue.claim(2), key=lambda event: event.event_key != f"message:{PAGE}:old"
    )
    await runtime.queue.finish(old, EventOutcome(status=PROCESSED))
    clock.advance(days=2)
    await runtime.queue.finish(new, EventOutcome(status=PROCESSED))
    clock.advance(days=29, hours=12)

    async with unscoped(runtime) as connection:
        purged = await purge_expired_payloads(
            connection, now=clock.now(), retention=timedelta(days=30)
        )
        rows = {row.event_key: row for row in await connection.execute(select(webhook_events))}

    assert purged == 1
    assert rows[f"message:{PAGE}:old"].payload_encrypted is None
    assert rows[f"message:{PAGE}:old"].status == PROCESSED
    assert rows[f"message:{PAGE}:new"].payload_encrypted is not None


async def lease_expiry(runtime: Runtime, event_id: int) -> object:
    async with unscoped(runtime) as connection:
        return (
            await connection.execute(
                select(webhook_events.c.lease_expires_at).where(webhook_events.c.id == event_id)
            )
        ).scalar_one()


async def test_a_lease_with_enough_time_left_is_kept_without_a_write_and_renewed_after(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "m1"))
    [claimed] = await runtime.queue.claim(1)
    lease = timedelta(seconds=runtime.settings.lease_seconds)
    claimed_until = await lease_expiry(runtime, claimed.id)

    assert await runtime.queue.keep_lease(claimed, needed=lease / 2)
    assert await lease_expiry(runtime, claimed.id) == claimed_until

    clock.advance(seconds=lease.total_seconds() * 0.75)
    assert await runtime.queue.keep_lease(claimed, needed=lease / 2)
    assert await lease_expiry(runtime, claimed.id) == clock.now() + lease


async def test_a_lease_another_worker_took_over_is_not_kept(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await post_messages(client, dm("1001", "m1"))
    slow = other_queue(runtime, "slow-worker")
    [claimed] = await slow.claim(1)
    clock.advance(seconds=runtime.settings.lease_seconds + 1)
    [taken_over] = await other_queue(runtime, "other-worker").claim(1)

    assert taken_over.id == claimed.id
    assert not await slow.keep_lease(claimed, needed=timedelta(seconds=1))
