"""One event whose handler raises every time: it ends dead after its retries, and it holds up
nobody but the later events of its own conversation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from frontdesk.app import create_app
from frontdesk.config import Settings
from frontdesk.handlers.dispatch import handle_event
from frontdesk.inbox.queue import ClaimedEvent, EventOutcome
from frontdesk.inbox.worker import Worker
from frontdesk.runtime import Runtime
from frontdesk.testing.signing import signed_headers
from tests.reliability.harness import (
    APP_SECRET,
    VERIFY_TOKEN,
    Dm,
    FaultReport,
    FaultyGraphApi,
    Ledger,
    conversations,
    delivery_body,
    duplicate_sends,
    link_doctors,
    now_ms,
    outcome_of,
    percentile,
    report,
    scenario_databases,
    sized,
)

PAGES = ("17841400000000501", "17841400000000502")
RETRY_DELAYS = [2, 2, 2]  # the poison is tried four times over six seconds
CONCURRENCY = 4
RATE = 20  # messages a second, well within what one worker handles


@pytest.mark.parametrize("database", scenario_databases())
async def test_a_poison_event_ends_dead_without_delaying_other_conversations(
    database: str,
    scenario_url: str,
    encryption_key: str,
    tmp_path: Path,
    product_logging: Path,
) -> None:
    count = sized(50, 400)
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=scenario_url,
        app_secrets=[APP_SECRET],
        verify_token=VERIFY_TOKEN,
        encryption_keys=[encryption_key],
        graph_api_url="http://graph.instagram.test",
        facebook_graph_api_url="http://graph.facebook.test",
        retry_delays=RETRY_DELAYS,
    )
    fake = FaultyGraphApi()
    runtime = Runtime.build(settings, graph_transport=httpx2.ASGITransport(app=fake.app))
    await link_doctors(scenario_url, runtime.keyring, PAGES)
    poison = Dm(PAGES[0], "7200000000000000", "m_poison", now_ms() - 5_000)
    behind_poison = Dm(PAGES[0], poison.sender, "m_poison_next", now_ms() - 4_000)
    baseline = conversations(PAGES, count, 1, tag="baseline", first_sender=200_000)
    others = conversations(PAGES, count, 1, tag="others", first_sender=300_000)

    async def handler(event: ClaimedEvent) -> EventOutcome:
        if event.event_key == poison.event_key:
            raise RuntimeError("this handler chokes on this event, every time")
        return await handle_event(runtime.handler_context, event)

    worker = Worker(
        runtime.queue,
        handler,
        clock=runtime.clock,
        metrics=runtime.metrics,
        concurrency=CONCURRENCY,
        poll_seconds=0.05,
    )
    ledger = Ledger(scenario_url)
    started = time.monotonic()
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    running = asyncio.create_task(worker.run(shutdown_grace=2))
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
        ) as http:
            # Messages arrive at a steady rate the worker keeps up with, so that an event's
            # latency is its own handling, not its place in a backlog.
            await post_steadily(http, baseline)
            assert await wait_for(ledger, {dm.event_key for dm in baseline}, {"processed"})
            await post_steadily(http, [poison, behind_poison])
            await post_steadily(http, others)
            everyone = {dm.event_key for dm in [*others, behind_poison]}
            assert await wait_for(ledger, everyone, {"processed"})
            assert await wait_for(ledger, {poison.event_key}, {"dead"})
        rows = {row.event_key: row for row in await ledger.event_rows()}
        outcome = await outcome_of(ledger, everyone | {dm.event_key for dm in baseline})
    finally:
        worker.stop()
        await running
        await runtime.stop()
        ledger.close()

    base = latencies(rows, baseline)
    with_poison = latencies(rows, others)
    dead = rows[poison.event_key]
    # The others that came in while the poison was still being retried.
    alongside = latencies(
        rows, [dm for dm in others if rows[dm.event_key].received_at < dead.finished_at]
    )
    waited = rows[behind_poison.event_key]
    doubles = duplicate_sends(fake.sends_per_recipient())
    report(
        FaultReport(
            fault="poison event (handler raises every time)",
            database=database,
            load=f"{count} other conversations at {RATE}/s, baseline {count} without poison",
            injected="1 poison event + 1 message behind it",
            acknowledged=outcome.acknowledged + 1,
            processed=outcome.processed,
            lost=len(outcome.lost),
            duplicate_sends=str(doubles),
            seconds=time.monotonic() - started,
            notes=f"poison {dead.status} after {dead.attempts} attempts; latency of the "
            f"{len(alongside)} others handled while it was retried p50/p95/max "
            f"{summary(alongside)}, of all others {summary(with_poison)}, baseline "
            f"{summary(base)}; the message "
            f"behind it waited {(waited.finished_at - waited.received_at).total_seconds():.1f} s",
        )
    )
    assert (dead.status, dead.attempts) == ("dead", len(RETRY_DELAYS) + 1)
    assert dead.last_error == "RuntimeError: handler_error"
    assert outcome.lost == []
    # Held up behind the poison, they would wait seconds for its next retry or its burial.
    assert alongside, "other conversations were handled while the poison was being retried"
    assert max(with_poison) < max(base) + 1.5, "other conversations were held up"
    # Half a retry delay of margin: a machine shared with other work jitters, a block does not.
    assert percentile(alongside, 0.95) < percentile(base, 0.95) + 1.0
    assert waited.finished_at >= dead.finished_at, "its own conversation keeps its order"
    logged = await asyncio.to_thread(product_logging.read_text)
    assert "handler_crashed" in logged
    assert "chokes" not in logged, "the exception's text never reaches the log"
    assert doubles == 0


async def post_steadily(http: httpx2.AsyncClient, dms: list[Dm]) -> None:
    """One delivery per message, RATE a second, each answered 200."""

    async def one(dm: Dm) -> None:
        body = delivery_body([dm])
        response = await http.post(
            "/webhooks/instagram", content=body, headers=signed_headers(body, APP_SECRET)
        )
        assert response.status_code == 200, response.text

    posts = []
    for dm in dms:
        posts.append(asyncio.create_task(one(dm)))
        await asyncio.sleep(1 / RATE)
    await asyncio.gather(*posts)


async def wait_for(ledger: Ledger, keys: set[str], statuses: set[str], within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        by_key = await ledger.event_status_by_key()
        if all(by_key.get(key) in statuses for key in keys):
            return True
        await asyncio.sleep(0.05)
    return False


def latencies(rows: dict[str, Any], dms: list[Dm]) -> list[float]:
    """Seconds from intake to finished, per event."""
    return [
        (rows[dm.event_key].finished_at - rows[dm.event_key].received_at).total_seconds()
        for dm in dms
    ]


def summary(values: list[float]) -> str:
    return "/".join(f"{percentile(values, share):.2f}" for share in (0.5, 0.95, 1.0)) + " s"
