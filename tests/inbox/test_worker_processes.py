"""Several `frontdesk worker` processes share one PostgreSQL queue; SIGTERM stops them cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx2
import pytest
from sqlalchemy import func, select

from frontdesk.app import create_app
from frontdesk.clock import SystemClock
from frontdesk.config import Settings
from frontdesk.db.tables import webhook_events
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import add_linked_doctor, post_delivery, unscoped

PAGE = "17841455512340001"
CONVERSATIONS = 40
MESSAGES_EACH = 3


async def open_events(runtime: Runtime) -> int:
    async with unscoped(runtime) as connection:
        statement = select(func.count()).where(
            webhook_events.c.status.in_(("queued", "processing"))
        )
        return int((await connection.execute(statement)).scalar_one())


@pytest.mark.postgres
async def test_two_worker_processes_drain_the_queue_once_and_stop_on_sigterm(
    settings: Settings,
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several processes sharing a queue is the PostgreSQL deployment")
    fake_graph = FakeGraphApi()
    runtime = Runtime.build(settings, clock=SystemClock())
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    now_ms = int(time.time() * 1000)
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with (
        fake_graph.serve() as graph_url,
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http,
    ):
        for n in range(CONVERSATIONS):
            items = [
                payloads.message_item(
                    sender=f"{5000 + n}",
                    recipient=PAGE,
                    mid=f"m-{n}-{k}",
                    text="hi",
                    timestamp=now_ms - 1000 + k,
                )
                for k in range(MESSAGES_EACH)
            ]
            await post_delivery(http, payloads.delivery(payloads.entry(PAGE, messaging=items)))
        workers = [start_worker(settings, graph_url) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while await open_events(runtime) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.1)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            exits = [worker.wait(timeout=30) for worker in workers]
    try:
        async with unscoped(runtime) as connection:
            processed = (
                await connection.execute(
                    select(func.count()).where(webhook_events.c.status == "processed")
                )
            ).scalar_one()
    finally:
        await runtime.stop()

    assert exits == [0, 0]
    assert processed == CONVERSATIONS * MESSAGES_EACH
    per_patient = Counter(send.recipient_id for send in fake_graph.sends)
    assert len(per_patient) == CONVERSATIONS
    assert set(per_patient.values()) == {1}, "one greeting per new conversation, never two"


def start_worker(settings: Settings, graph_url: str) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRONTDESK_")}
    env.update(
        FRONTDESK_DATABASE_URL=settings.database_url,
        FRONTDESK_ENCRYPTION_KEYS=",".join(settings.encryption_keys),
        FRONTDESK_GRAPH_API_URL=graph_url,
        FRONTDESK_WORKER_POLL_SECONDS="0.05",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "worker", "--concurrency", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
