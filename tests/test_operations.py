"""/healthz, /readyz and /metrics: what an operator and a load balancer see."""

from __future__ import annotations

from pathlib import Path

import httpx2

from frontdesk.app import create_app
from frontdesk.clock import FixedClock
from frontdesk.config import Settings
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from tests.conftest import post_delivery, recent_ms


async def test_healthz_answers_ok(client: httpx2.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_ready_on_a_migrated_database(client: httpx2.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


async def test_readyz_is_503_when_migrations_are_pending(
    settings: Settings, tmp_path: Path
) -> None:
    unmigrated = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    runtime = Runtime.build(unmigrated)
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://t"
        ) as http:
            response = await http.get("/readyz")
    finally:
        await runtime.stop()

    assert (response.status_code, response.json()) == (503, {"status": "migrations_pending"})


async def test_metrics_show_deliveries_queue_depth_and_oldest_queued_age(
    client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    delivery = payloads.dm_delivery(page_id="1", sender="2", text="x", timestamp=recent_ms())
    await post_delivery(client, delivery)
    await post_delivery(client, delivery)
    clock.advance(seconds=42)

    text = (await client.get("/metrics")).text

    assert 'frontdesk_webhook_deliveries_total{result="accepted"} 2.0' in text
    assert "frontdesk_webhook_events_received_total 1.0" in text
    assert "frontdesk_webhook_duplicate_events_total 1.0" in text
    assert 'frontdesk_events_by_status{status="queued"} 1.0' in text
    assert "frontdesk_queue_depth 1.0" in text
    assert "frontdesk_oldest_queued_age_seconds 42.0" in text


async def test_openapi_is_served(client: httpx2.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert "/readyz" in response.json()["paths"]
