"""Handler behaviour beyond the main path: long replies, standby, postbacks, the fallback reply."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.app import create_app
from frontdesk.clock import FixedClock
from frontdesk.config import Settings
from frontdesk.db.tables import messages, webhook_events
from frontdesk.inbox.queue import replay_event
from frontdesk.replies.responder import DEFAULT_RULES
from frontdesk.replies.rules import save_reply_rules
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import add_linked_doctor, post_delivery, recent_ms, unscoped

PAGE = "17841455512340001"
PATIENT = "7321554890123456"


def dm(mid: str, text: str = "hello") -> dict[str, object]:
    return payloads.message_item(
        sender=PATIENT, recipient=PAGE, mid=mid, text=text, timestamp=recent_ms()
    )


async def outcomes(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    async with unscoped(runtime) as connection:
        rows = await connection.execute(select(webhook_events).order_by(webhook_events.c.id))
        return [(row.kind, row.status, row.reason) for row in rows]


async def test_a_reply_over_1000_characters_is_sent_in_parts_in_order(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    long_greeting = " ".join(f"word{n:04d}" for n in range(300))
    async with unscoped(runtime) as connection:
        await save_reply_rules(
            connection,
            doctor.id,
            replace(DEFAULT_RULES, greeting_text=long_greeting),
            runtime.clock.now(),
        )

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE, messaging=[dm("m-long")])))
    await runtime.worker.run_until_idle()

    texts = [send.text for send in fake_graph.sends]
    assert len(texts) == 3
    assert all(len(text) <= 1000 for text in texts)
    assert " ".join(texts) == long_greeting


async def test_disabled_rules_record_the_message_and_send_nothing(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    async with unscoped(runtime) as connection:
        await save_reply_rules(
            connection, doctor.id, replace(DEFAULT_RULES, enabled=False), runtime.clock.now()
        )

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE, messaging=[dm("m-off")])))
    await runtime.worker.run_until_idle()

    assert await outcomes(runtime) == [("message", "processed", "replies_disabled")]
    assert fake_graph.attempts == 0


async def test_standby_messages_and_postbacks_are_recorded_but_never_answered(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    postback = payloads.postback_item(
        sender=PATIENT,
        recipient=PAGE,
        mid="m-pb",
        title="Book a visit",
        payload="BOOK",
        timestamp=recent_ms(3),
    )
    entry = payloads.entry(PAGE, messaging=[postback], standby=[dm("m-standby")])

    await post_delivery(client, payloads.delivery(entry))
    await runtime.worker.run_until_idle()

    assert sorted(await outcomes(runtime)) == [
        ("postback", "processed", "no_reply"),
        ("standby_message", "processed", "no_reply"),
    ]
    async with unscoped(runtime) as connection:
        mids = set((await connection.execute(select(messages.c.mid))).scalars())
    assert mids == {"m-pb", "m-standby"}
    assert fake_graph.attempts == 0


UNKNOWN_PAGE = "17849999999999999"


@contextlib.asynccontextmanager
async def fallback_instance(
    settings: Settings, clock: FixedClock, fake_graph: FakeGraphApi, *, token: str
) -> AsyncIterator[tuple[Runtime, httpx2.AsyncClient]]:
    """A runtime configured with the fallback reply (its token may be left empty), and a client."""
    configured = settings.model_copy(
        update={"fallback_reply_text": "We moved!", "fallback_access_token": token}
    )
    runtime = Runtime.build(
        configured, clock=clock, graph_transport=httpx2.ASGITransport(app=fake_graph.app)
    )
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://t"
        ) as http:
            yield runtime, http
    finally:
        await runtime.stop()


def to_unknown_page(mid: str) -> dict[str, object]:
    return payloads.message_item(
        sender=PATIENT, recipient=UNKNOWN_PAGE, mid=mid, text="hi", timestamp=recent_ms()
    )


@pytest.mark.parametrize(
    ("fallback_token", "expected_sends"),
    [("", 0), ("fallback-token", 1)],
    ids=["text-only", "both"],
)
async def test_unknown_page_gets_the_fallback_reply_only_when_both_settings_are_set(
    settings: Settings,
    clock: FixedClock,
    fake_graph: FakeGraphApi,
    fallback_token: str,
    expected_sends: int,
) -> None:
    async with fallback_instance(settings, clock, fake_graph, token=fallback_token) as (
        runtime,
        http,
    ):
        entry = payloads.entry(UNKNOWN_PAGE, messaging=[to_unknown_page("m-fb")])
        await post_delivery(http, payloads.delivery(entry))
        await runtime.worker.run_until_idle()
        assert await outcomes(runtime) == [("message", "failed", "unknown_page")]

    assert [(send.access_token, send.recipient_id) for send in fake_graph.sends] == [
        ("fallback-token", PATIENT)
    ] * expected_sends


async def test_a_standby_message_to_an_unknown_page_gets_no_fallback_reply(
    settings: Settings, clock: FixedClock, fake_graph: FakeGraphApi
) -> None:
    async with fallback_instance(settings, clock, fake_graph, token="fallback-token") as (
        runtime,
        http,
    ):
        entry = payloads.entry(UNKNOWN_PAGE, standby=[to_unknown_page("m-sb")])
        await post_delivery(http, payloads.delivery(entry))
        await runtime.worker.run_until_idle()

    assert fake_graph.attempts == 0


async def test_the_fallback_reply_is_sent_once_even_when_the_event_is_replayed(
    settings: Settings, clock: FixedClock, fake_graph: FakeGraphApi
) -> None:
    async with fallback_instance(settings, clock, fake_graph, token="fallback-token") as (
        runtime,
        http,
    ):
        entry = payloads.entry(UNKNOWN_PAGE, messaging=[to_unknown_page("m-once")])
        await post_delivery(http, payloads.delivery(entry))
        await runtime.worker.run_until_idle()
        async with unscoped(runtime) as connection:
            event_id = (await connection.execute(select(webhook_events.c.id))).scalar_one()
            assert await replay_event(connection, event_id, clock.now())
        await runtime.worker.run_until_idle()

    assert len(fake_graph.sends) == 1
