"""Canary strings sent through the whole pipeline never reach logs, audit rows or plain columns."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.clock import FixedClock
from frontdesk.db.tables import metadata
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from frontdesk.testing.signing import signed_headers
from tests.conftest import (
    APP_SECRET,
    add_linked_doctor,
    logging_into,
    post_delivery,
    recent_ms,
    unscoped,
)

CANARY_TEXT = "CANARY-TEXT-4f1d9e my chest hurts"
CANARY_SENDER = "990011223344556677"
CANARY_TOKEN = "CANARY-TOKEN-8b2c71"
CANARY_UNKNOWN_PAGE = "17840000000424242"
PAGE = "17841455512340001"
CANARIES = (CANARY_TEXT, "CANARY-TEXT", CANARY_SENDER, CANARY_TOKEN, CANARY_UNKNOWN_PAGE)
# Columns whose job is to hold these values (routing and sending need them) or their ciphertext.
COLUMNS_ALLOWED_TO_HOLD_IDS = {
    ("patients", "platform_user_id"),
    ("webhook_events", "page_id"),
    ("webhook_events", "event_key"),  # message:{entry id}:{mid}; the entry id is the clinic's
}


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    with logging_into(stream):
        yield stream


async def test_canaries_never_reach_logs_audit_rows_errors_or_plaintext_columns(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    clock: FixedClock,
    captured_logs: io.StringIO,
) -> None:
    await add_linked_doctor(runtime, name="Dr Canary", page_id=PAGE, token=CANARY_TOKEN)
    fake_graph.fail_next(1, status=500)
    inbound = payloads.message_item(
        sender=CANARY_SENDER, recipient=PAGE, mid="mid-c1", text=CANARY_TEXT, timestamp=recent_ms(9)
    )
    echo = payloads.echo_item(
        page_id=PAGE,
        recipient=CANARY_SENDER,
        mid="mid-c2",
        text=CANARY_TEXT,
        timestamp=recent_ms(8),
    )
    unknown = payloads.message_item(
        sender=CANARY_SENDER,
        recipient=CANARY_UNKNOWN_PAGE,
        mid="mid-c3",
        text=CANARY_TEXT,
        timestamp=recent_ms(7),
    )
    await post_delivery(
        client,
        payloads.delivery(
            payloads.entry(PAGE, messaging=[inbound, echo]),
            payloads.entry(CANARY_UNKNOWN_PAGE, messaging=[unknown]),
        ),
    )
    await post_delivery(client, {"object": "instagram", "entry": [{"id": CANARY_TEXT}]})
    bad_body = b"not json " + CANARY_TEXT.encode()
    await client.post(
        "/webhooks/instagram", content=bad_body, headers=signed_headers(bad_body, APP_SECRET)
    )
    await runtime.worker.run_until_idle()
    clock.advance(seconds=61)
    await runtime.worker.run_until_idle()
    fake_graph.reject_token(CANARY_TOKEN)
    second = payloads.message_item(
        sender=CANARY_SENDER, recipient=PAGE, mid="mid-c4", text=CANARY_TEXT, timestamp=recent_ms(1)
    )
    clock.advance(hours=13)
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE, messaging=[second])))
    await runtime.worker.run_until_idle()
    metrics = (await client.get("/metrics")).text

    assert len(fake_graph.sends) == 1, "the pipeline really ran: one reply went out"
    logs = captured_logs.getvalue()
    assert "event_finished" in logs, "logs were really captured"
    for canary in CANARIES:
        assert canary not in logs
        assert canary not in metrics
    leaks = await plaintext_columns_holding(runtime, CANARIES)
    assert leaks == set()


async def plaintext_columns_holding(
    runtime: Runtime, canaries: tuple[str, ...]
) -> set[tuple[str, str]]:
    """Every (table, column) whose stored value contains a canary, as text or as raw bytes."""
    found: set[tuple[str, str]] = set()
    async with unscoped(runtime) as connection:
        for table in metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                for column, value in row._mapping.items():
                    if (table.name, column) in COLUMNS_ALLOWED_TO_HOLD_IDS:
                        continue
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if any(canary.encode() in raw for canary in canaries):
                        found.add((table.name, column))
    return found
