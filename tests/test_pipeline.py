"""The whole path through HTTP and the worker: intake, routing, records, replies, failures."""

from __future__ import annotations

from datetime import timedelta

import httpx2
from sqlalchemy import func, select

from frontdesk.clock import FixedClock
from frontdesk.db.tables import (
    audit_logs,
    conversations,
    doctor_instagram,
    messages,
    patients,
    webhook_events,
)
from frontdesk.inbox.queue import replay_event
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import add_linked_doctor, post_delivery, recent_ms, unscoped

PAGE_A = "17841455512340001"
PAGE_B = "17841466698760002"
PATIENT = "7321554890123456"
OTHER_PATIENT = "8899001122334455"


async def count(runtime: Runtime, table: object, *where: object) -> int:
    async with unscoped(runtime) as connection:
        statement = select(func.count()).select_from(table)  # type: ignore[arg-type]
        if where:
            statement = statement.where(*where)  # type: ignore[arg-type]
        return int((await connection.execute(statement)).scalar_one())


async def event_rows(runtime: Runtime) -> list[object]:
    async with unscoped(runtime) as connection:
        return list(await connection.execute(select(webhook_events).order_by(webhook_events.c.id)))


def text_message(page_id: str, sender: str, mid: str, text: str, seconds_ago: float = 5) -> dict:
    return payloads.message_item(
        sender=sender, recipient=page_id, mid=mid, text=text, timestamp=recent_ms(seconds_ago)
    )


async def test_batch_for_two_doctors_gives_each_their_own_patient_conversation_and_reply(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor_a = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    doctor_b = await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="token-b")
    delivery = payloads.delivery(
        payloads.entry(PAGE_A, messaging=[text_message(PAGE_A, PATIENT, "mid-a1", "hello A")]),
        payloads.entry(PAGE_B, messaging=[text_message(PAGE_B, PATIENT, "mid-b1", "hello B")]),
    )

    response = await post_delivery(client, delivery)
    assert response.status_code == 200
    assert response.json() == {"events": 2, "duplicates": 0}
    await runtime.worker.run_until_idle()

    for doctor in (doctor_a, doctor_b):
        assert await count(runtime, patients, patients.c.doctor_id == doctor.id) == 1
        assert await count(runtime, conversations, conversations.c.doctor_id == doctor.id) == 1
        inbound = messages.c.direction == "inbound"
        assert await count(runtime, messages, messages.c.doctor_id == doctor.id, inbound) == 1
    sends = {(send.account_id, send.access_token, send.recipient_id) for send in fake_graph.sends}
    assert sends == {(PAGE_A, "token-a", PATIENT), (PAGE_B, "token-b", PATIENT)}
    assert [row.status for row in await event_rows(runtime)] == ["processed", "processed"]


async def test_same_delivery_posted_twice_stores_its_events_once(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    delivery = payloads.delivery(
        payloads.entry(PAGE_A, messaging=[text_message(PAGE_A, PATIENT, "mid-1", "hi")])
    )

    first = await post_delivery(client, delivery)
    second = await post_delivery(client, delivery)
    await runtime.worker.run_until_idle()

    assert first.json() == {"events": 1, "duplicates": 0}
    assert second.json() == {"events": 0, "duplicates": 1}
    assert await count(runtime, webhook_events) == 1
    assert await count(runtime, messages, messages.c.direction == "inbound") == 1
    assert len(fake_graph.sends) == 1


async def test_unknown_page_is_failed_audited_with_a_hash_and_not_dead_lettered(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    unknown_page = "17849999999999999"
    delivery = payloads.delivery(
        payloads.entry(
            unknown_page, messaging=[text_message(unknown_page, PATIENT, "mid-u", "anyone?")]
        )
    )

    await post_delivery(client, delivery)
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.reason) == ("failed", "unknown_page")
    assert await count(runtime, patients) == 0
    assert await count(runtime, conversations) == 0
    assert await count(runtime, webhook_events, webhook_events.c.status == "dead") == 0
    async with unscoped(runtime) as connection:
        audit = (
            await connection.execute(
                select(audit_logs).where(audit_logs.c.action == "webhook_processed")
            )
        ).one()
    assert (audit.resource_type, audit.status) == ("webhook", "failure")
    assert audit.metadata["event_id"] == event.id
    assert audit.metadata["provider"] == "instagram"
    assert len(audit.metadata["page_id_hash"]) == 16
    assert unknown_page not in str(audit.metadata)
    assert fake_graph.attempts == 0


async def test_dashboard_test_payload_routes_nowhere(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")

    response = await post_delivery(client, payloads.dashboard_test_delivery())
    await runtime.worker.run_until_idle()

    assert response.json() == {"events": 1, "duplicates": 0}
    [event] = await event_rows(runtime)
    assert (event.status, event.reason) == ("failed", "unknown_page")
    assert await count(runtime, patients) == 0


async def test_recipient_id_routes_when_entry_id_is_not_linked(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    item = text_message(PAGE_A, PATIENT, "mid-r", "hello")
    delivery = payloads.delivery(payloads.entry("1234567890", messaging=[item]))

    await post_delivery(client, delivery)
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.doctor_id) == ("processed", doctor.id)


async def test_facebook_page_id_routes_to_the_doctor(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    page_id = "104000000000001"
    doctor = await add_linked_doctor(
        runtime, name="Dr A", page_id=PAGE_A, token="token-a", facebook_page_id=page_id
    )
    item = text_message(page_id, PATIENT, "mid-fb", "hello")

    await post_delivery(client, payloads.delivery(payloads.entry(page_id, messaging=[item])))
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.doctor_id) == ("processed", doctor.id)


async def test_echo_is_recorded_as_outbound_and_never_answered(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    echo = payloads.echo_item(
        page_id=PAGE_A,
        recipient=PATIENT,
        mid="mid-echo",
        text="sent from the phone",
        timestamp=recent_ms(),
    )

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[echo])))
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.kind, event.status, event.doctor_id) == ("echo", "processed", doctor.id)
    outbound = (messages.c.direction == "outbound", messages.c.origin == "echo")
    assert await count(runtime, messages, *outbound) == 1
    assert fake_graph.attempts == 0


async def test_echo_of_our_own_reply_is_matched_not_recorded_twice(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    inbound = text_message(PAGE_A, PATIENT, "mid-in", "hello")
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[inbound])))
    await runtime.worker.run_until_idle()
    [send] = fake_graph.sends

    echo = payloads.echo_item(
        page_id=PAGE_A,
        recipient=PATIENT,
        mid=send.message_id,
        text=send.text,
        timestamp=recent_ms(1),
    )
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[echo])))
    await runtime.worker.run_until_idle()

    rows = await event_rows(runtime)
    assert rows[-1].reason == "echo_of_our_send"
    assert await count(runtime, messages, messages.c.direction == "outbound") == 1
    assert len(fake_graph.sends) == 1


async def test_graph_500_is_retried_then_dead_lettered_and_replayable(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    fake_graph.fail_next(4, status=500, code=2)
    item = text_message(PAGE_A, PATIENT, "mid-500", "hello", seconds_ago=1)
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[item])))

    await runtime.worker.run_until_idle()
    for delay in (60, 300, 900):
        [event] = await event_rows(runtime)
        assert event.status == "queued"
        clock.advance(seconds=delay - 1)
        assert await runtime.worker.run_until_idle() == 0, "retried before its delay"
        clock.advance(seconds=1)
        await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.attempts) == ("dead", 4)
    assert event.payload_encrypted is not None
    assert "graph_unavailable" in event.last_error
    assert fake_graph.sends == []

    async with unscoped(runtime) as connection:
        assert await replay_event(connection, event.id, clock.now())
    clock.set(clock.now() - timedelta(hours=0))
    await runtime.worker.run_until_idle()
    [event] = await event_rows(runtime)
    assert event.status == "processed"
    assert len(fake_graph.sends) == 1
    assert await count(runtime, messages, messages.c.direction == "inbound") == 1


async def test_token_rejected_marks_connection_needs_reauth_and_holds_the_reply(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    fake_graph.reject_token("token-a")
    item = text_message(PAGE_A, PATIENT, "mid-190", "hello")

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[item])))
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.reason) == ("failed", "token_rejected")
    async with unscoped(runtime) as connection:
        status = (
            await connection.execute(
                select(doctor_instagram.c.status).where(doctor_instagram.c.doctor_id == doctor.id)
            )
        ).scalar_one()
        reply = (
            await connection.execute(
                select(messages.c.send_status).where(messages.c.direction == "outbound")
            )
        ).scalar_one()
    assert status == "needs_reauth"
    assert reply == "held"
    assert await count(runtime, messages, messages.c.direction == "inbound") == 1

    second = text_message(PAGE_A, PATIENT, "mid-after", "still there?")
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[second])))
    await runtime.worker.run_until_idle()
    assert await count(runtime, messages, messages.c.direction == "inbound") == 2
    assert fake_graph.attempts == 1, "no send is tried while the connection needs reauth"


async def test_no_reply_outside_the_24_hour_window(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    old = text_message(PAGE_A, PATIENT, "mid-old", "hello", seconds_ago=25 * 3600)

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[old])))
    await runtime.worker.run_until_idle()

    [event] = await event_rows(runtime)
    assert (event.status, event.reason) == ("processed", "outside_messaging_window")
    assert fake_graph.attempts == 0


async def test_greeting_then_cooldown_then_emergency_regardless_of_cooldown(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    items = [
        text_message(PAGE_A, PATIENT, "m1", "hello", seconds_ago=30),
        text_message(PAGE_A, PATIENT, "m2", "are you there", seconds_ago=20),
        text_message(PAGE_A, PATIENT, "m3", "this is an EMERGENCY", seconds_ago=10),
    ]

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=items)))
    await runtime.worker.run_until_idle()

    reasons = [row.reason for row in await event_rows(runtime)]
    assert reasons == ["greeting", "cooldown", "emergency"]
    assert len(fake_graph.sends) == 2
    assert "emergency" in fake_graph.sends[1].text.lower()


async def test_events_of_one_conversation_are_handled_in_timestamp_order(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    later = text_message(PAGE_A, PATIENT, "late", "second", seconds_ago=1)
    earlier = text_message(PAGE_A, PATIENT, "early", "first", seconds_ago=9)
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[later])))
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[earlier])))

    first_batch = await runtime.queue.claim(10)

    assert [event.event_key for event in first_batch] == [f"message:{PAGE_A}:early"]


async def test_reads_reactions_and_comments_are_ignored_with_a_reason(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    entry = payloads.entry(
        PAGE_A,
        messaging=[
            payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid="x1", timestamp=recent_ms()),
            payloads.reaction_item(
                sender=PATIENT, recipient=PAGE_A, mid="x2", timestamp=recent_ms()
            ),
        ],
        changes=[payloads.comment_change(comment_id="c1", from_id=PATIENT, text="nice")],
    )

    response = await post_delivery(client, payloads.delivery(entry))
    await runtime.worker.run_until_idle()

    assert response.json()["events"] == 3
    outcomes = {(row.kind, row.status, row.reason) for row in await event_rows(runtime)}
    assert outcomes == {
        ("read", "ignored", "read_receipt"),
        ("reaction", "ignored", "reaction_not_stored"),
        ("comment", "ignored", "comments_not_handled"),
    }


async def test_unsent_message_is_erased_and_edit_updates_it(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    first = text_message(PAGE_A, PATIENT, "mid-e", "typo", seconds_ago=20)
    second = text_message(PAGE_A, PATIENT, "mid-d", "oops", seconds_ago=15)
    await post_delivery(
        client, payloads.delivery(payloads.entry(PAGE_A, messaging=[first, second]))
    )
    await runtime.worker.run_until_idle()
    changes = [
        payloads.edit_item(
            sender=PATIENT, recipient=PAGE_A, mid="mid-e", text="fixed", timestamp=recent_ms(10)
        ),
        payloads.deleted_item(
            sender=PATIENT, recipient=PAGE_A, mid="mid-d", timestamp=recent_ms(5)
        ),
    ]

    await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=changes)))
    await runtime.worker.run_until_idle()

    reasons = [row.reason for row in await event_rows(runtime)][2:]
    assert reasons == ["message_edited", "message_erased"]
    async with unscoped(runtime) as connection:
        erased = (await connection.execute(select(messages).where(messages.c.mid == "mid-d"))).one()
    assert erased.body_encrypted is None
    assert erased.deleted_at is not None


async def test_same_patient_writing_to_two_doctors_is_two_patients(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="token-b")
    delivery = payloads.delivery(
        payloads.entry(PAGE_A, messaging=[text_message(PAGE_A, OTHER_PATIENT, "x-a", "hi")]),
        payloads.entry(PAGE_B, messaging=[text_message(PAGE_B, OTHER_PATIENT, "x-b", "hi")]),
    )

    await post_delivery(client, delivery)
    await runtime.worker.run_until_idle()

    async with unscoped(runtime) as connection:
        owners = set(await connection.execute(select(patients.c.doctor_id)))
    assert len(owners) == 2


async def test_clinic_writing_to_clinic_keeps_both_the_echo_and_the_message(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    doctor_a = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    doctor_b = await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="token-b")
    shared_mid = "mid-between-clinics"
    delivery = payloads.delivery(
        payloads.entry(
            PAGE_A,
            messaging=[
                payloads.echo_item(
                    page_id=PAGE_A,
                    recipient=PAGE_B,
                    mid=shared_mid,
                    text="hi colleague",
                    timestamp=recent_ms(),
                )
            ],
        ),
        payloads.entry(
            PAGE_B, messaging=[text_message(PAGE_B, PAGE_A, shared_mid, "hi colleague")]
        ),
    )

    response = await post_delivery(client, delivery)
    await runtime.worker.run_until_idle()

    assert response.json() == {"events": 2, "duplicates": 0}
    owners = {(row.kind, row.doctor_id) for row in await event_rows(runtime)}
    assert owners == {("echo", doctor_a.id), ("message", doctor_b.id)}


async def test_one_message_delivered_through_two_subscriptions_is_recorded_and_answered_once(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    facebook_page = "104000000000001"
    await add_linked_doctor(
        runtime, name="Dr A", page_id=PAGE_A, token="token-a", facebook_page_id=facebook_page
    )
    copies = [
        payloads.delivery(
            payloads.entry(page, messaging=[text_message(page, PATIENT, "m-x", "hi")])
        )
        for page in (PAGE_A, facebook_page)
    ]

    for copy in copies:
        await post_delivery(client, copy)
    await runtime.worker.run_until_idle()

    reasons = [row.reason for row in await event_rows(runtime)]
    assert sorted(reasons) == ["duplicate_message", "greeting"], "either copy may come first"
    assert await count(runtime, messages, messages.c.direction == "inbound") == 1
    assert len(fake_graph.sends) == 1
