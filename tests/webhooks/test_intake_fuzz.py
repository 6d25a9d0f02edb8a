"""Thousands of signed random and mutated deliveries: never a 5xx, and every stored event ends
in a final state or waits for a retry. FRONTDESK_RELIABILITY=long posts ten thousand."""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any

import httpx2
from sqlalchemy import func, select

from frontdesk.db.tables import webhook_events
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.signing import signed_headers
from tests.conftest import APP_SECRET, add_linked_doctor, recent_ms, unscoped

PAGE = "17841455512340001"
DELIVERIES = 10_000 if os.environ.get("FRONTDESK_RELIABILITY") == "long" else 1_500
STRANGE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    10**30,
    1.5e308,
    "",
    "0",
    "\u0000",
    "\ud800",
    "é" * 300,
    [],
    {},
    [[[[]]]],
    {"id": {"id": None}},
    "17841455512340001",
    "x" * 5000,
]


def seed_deliveries() -> list[dict[str, Any]]:
    now = recent_ms()
    sender = "7321554890123456"
    return [
        payloads.dm_delivery(page_id=PAGE, sender=sender, text="hello", timestamp=now),
        payloads.delivery(
            payloads.entry(
                PAGE,
                messaging=[
                    payloads.echo_item(
                        page_id=PAGE, recipient=sender, mid="e", text="x", timestamp=now
                    ),
                    payloads.read_item(sender=sender, recipient=PAGE, mid="r", timestamp=now),
                    payloads.reaction_item(sender=sender, recipient=PAGE, mid="m", timestamp=now),
                    payloads.edit_item(
                        sender=sender, recipient=PAGE, mid="m", text="y", timestamp=now
                    ),
                    payloads.deleted_item(sender=sender, recipient=PAGE, mid="m", timestamp=now),
                ],
                standby=[
                    payloads.message_item(
                        sender=sender, recipient=PAGE, mid="s", text="z", timestamp=now
                    )
                ],
                changes=[payloads.comment_change(comment_id="c", from_id=sender, text="t")],
            )
        ),
        payloads.dashboard_test_delivery(),
    ]


def mutate(document: Any, rng: random.Random) -> Any:
    """Replace, drop or duplicate a random part of a JSON document."""
    mutated = copy.deepcopy(document)
    for _ in range(rng.randint(1, 4)):
        containers = list(_containers(mutated))
        if not containers:
            return copy.deepcopy(rng.choice(STRANGE_VALUES))
        container = rng.choice(containers)
        keys = (
            list(container.keys()) if isinstance(container, dict) else list(range(len(container)))
        )
        if not keys:
            continue
        key = rng.choice(keys)
        action = rng.random()
        if action < 0.6:
            container[key] = copy.deepcopy(rng.choice(STRANGE_VALUES))
        elif action < 0.8 and isinstance(container, dict):
            del container[key]
        elif isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
    return mutated


def _containers(value: Any) -> Any:
    if isinstance(value, dict | list):
        yield value
        for child in value.values() if isinstance(value, dict) else value:
            yield from _containers(child)


async def test_random_and_mutated_signed_deliveries_never_get_a_5xx_and_all_events_settle(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    rng = random.Random(20261204)
    seeds = seed_deliveries()
    statuses: dict[int, int] = {}
    for n in range(DELIVERIES):
        document = mutate(rng.choice(seeds), rng)
        body = (
            json.dumps(document).encode()
            if n % 10
            else bytes(rng.getrandbits(8) for _ in range(64))
        )
        response = await client.post(
            "/webhooks/instagram", content=body, headers=signed_headers(body, APP_SECRET)
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    await runtime.worker.run_until_idle()

    assert set(statuses) <= {200, 400}, statuses
    assert statuses.get(200, 0) > DELIVERIES // 2
    async with unscoped(runtime) as connection:
        open_now = (
            await connection.execute(
                select(func.count()).where(webhook_events.c.status == "processing")
            )
        ).scalar_one()
        queued_due = (
            await connection.execute(
                select(func.count()).where(
                    webhook_events.c.status == "queued",
                    webhook_events.c.available_at <= runtime.clock.now(),
                )
            )
        ).scalar_one()
    assert (open_now, queued_due) == (0, 0), "every event is final or waits for a retry"
