"""The doctor's JSON API: conversations, messages, manual replies, rules, audit; scoped to them."""

from __future__ import annotations

import httpx2
import pytest

from frontdesk.clock import FixedClock
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import (
    LinkedDoctor,
    add_linked_doctor,
    bearer,
    give_account,
    post_delivery,
    recent_ms,
)

PAGE_A = "17841455512340001"
PAGE_B = "17841466698760002"
PATIENT = "7321554890123456"


async def patient_writes(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    page: str,
    text: str,
    mid: str,
    seconds_ago: float = 5,
) -> None:
    item = payloads.message_item(
        sender=PATIENT, recipient=page, mid=mid, text=text, timestamp=recent_ms(seconds_ago)
    )
    await post_delivery(client, payloads.delivery(payloads.entry(page, messaging=[item])))
    await runtime.worker.run_until_idle()


async def messages_url_of_the_only_conversation(client: httpx2.AsyncClient, token: str) -> str:
    [conversation] = (await client.get("/api/v1/conversations", headers=bearer(token))).json()[
        "conversations"
    ]
    return f"/api/v1/conversations/{conversation['id']}/messages"


@pytest.fixture
async def doctor_a(runtime: Runtime) -> tuple[LinkedDoctor, str]:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    return doctor, await give_account(runtime, doctor)


@pytest.fixture
async def doctor_b(runtime: Runtime) -> tuple[LinkedDoctor, str]:
    doctor = await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="token-b")
    return doctor, await give_account(runtime, doctor)


async def test_conversations_show_label_last_message_and_unread_count_until_read(
    runtime: Runtime, client: httpx2.AsyncClient, doctor_a: tuple[LinkedDoctor, str]
) -> None:
    _doctor, token = doctor_a
    await patient_writes(runtime, client, PAGE_A, "first", "m1", 20)
    await patient_writes(runtime, client, PAGE_A, "second", "m2", 10)

    listed = (await client.get("/api/v1/conversations", headers=bearer(token))).json()
    [conversation] = listed["conversations"]
    messages = await client.get(
        f"/api/v1/conversations/{conversation['id']}/messages", headers=bearer(token)
    )
    after = (await client.get("/api/v1/conversations", headers=bearer(token))).json()

    assert conversation["patient_label"].startswith("Patient ")
    assert PATIENT not in str(listed)
    assert conversation["unread_count"] == 2
    assert conversation["reply_window_open"] is True
    texts = [(m["direction"], m["origin"], m["text"]) for m in messages.json()["messages"]]
    assert texts[0] == ("inbound", "patient", "first")
    assert ("inbound", "patient", "second") in texts
    assert any(origin == "auto" for _, origin, _ in texts)
    assert after["conversations"][0]["unread_count"] == 0


async def test_conversations_are_paginated_newest_first(
    runtime: Runtime, client: httpx2.AsyncClient, doctor_a: tuple[LinkedDoctor, str]
) -> None:
    _doctor, token = doctor_a
    for n in range(5):
        item = payloads.message_item(
            sender=f"{9000 + n}",
            recipient=PAGE_A,
            mid=f"p{n}",
            text="x",
            timestamp=recent_ms(50 - n),
        )
        await post_delivery(client, payloads.delivery(payloads.entry(PAGE_A, messaging=[item])))
    await runtime.worker.run_until_idle()

    first = (await client.get("/api/v1/conversations?limit=2", headers=bearer(token))).json()
    second = (
        await client.get(
            f"/api/v1/conversations?limit=2&cursor={first['next_cursor']}", headers=bearer(token)
        )
    ).json()
    third = (
        await client.get(
            f"/api/v1/conversations?limit=2&cursor={second['next_cursor']}", headers=bearer(token)
        )
    ).json()
    bad = await client.get("/api/v1/conversations?cursor=not-a-cursor", headers=bearer(token))

    pages = [first, second, third]
    ids = [c["id"] for page in pages for c in page["conversations"]]
    assert len(ids) == len(set(ids)) == 5
    assert third["next_cursor"] is None
    times = [c["last_message_at"] for page in pages for c in page["conversations"]]
    assert times == sorted(times, reverse=True)
    assert bad.status_code == 400


async def test_a_manual_reply_is_queued_sent_with_the_doctors_token_and_idempotent(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    doctor_a: tuple[LinkedDoctor, str],
) -> None:
    _doctor, token = doctor_a
    await patient_writes(runtime, client, PAGE_A, "hello", "m1")
    url = await messages_url_of_the_only_conversation(client, token)
    headers = {**bearer(token), "Idempotency-Key": "reply-1"}

    first = await client.post(url, json={"text": "See you Thursday"}, headers=headers)
    repeat = await client.post(url, json={"text": "See you Thursday"}, headers=headers)
    await runtime.worker.run_until_idle()

    assert (first.status_code, repeat.status_code) == (202, 200)
    assert first.json()["message_ids"] == repeat.json()["message_ids"]
    manual = [send for send in fake_graph.sends if send.text == "See you Thursday"]
    assert [(send.access_token, send.recipient_id) for send in manual] == [("token-a", PATIENT)]
    stored = (await client.get(url, headers=bearer(token))).json()["messages"]
    assert ("manual", "sent") in {(m["origin"], m["send_status"]) for m in stored}


async def test_an_idempotency_key_sent_again_with_another_text_is_refused_and_sends_nothing_new(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    doctor_a: tuple[LinkedDoctor, str],
) -> None:
    _doctor, token = doctor_a
    await patient_writes(runtime, client, PAGE_A, "hello", "m1")
    url = await messages_url_of_the_only_conversation(client, token)
    headers = {**bearer(token), "Idempotency-Key": "reply-1"}

    first = await client.post(url, json={"text": "See you Thursday"}, headers=headers)
    other = await client.post(url, json={"text": "See you Friday"}, headers=headers)
    await runtime.worker.run_until_idle()

    assert (first.status_code, other.status_code) == (202, 422)
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert [send.text for send in fake_graph.sends if send.text.startswith("See you")] == [
        "See you Thursday"
    ]


async def test_a_manual_reply_outside_the_24_hour_window_is_refused_clearly(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    clock: FixedClock,
    doctor_a: tuple[LinkedDoctor, str],
) -> None:
    _doctor, token = doctor_a
    await patient_writes(runtime, client, PAGE_A, "hello", "m1")
    [conversation] = (await client.get("/api/v1/conversations", headers=bearer(token))).json()[
        "conversations"
    ]
    clock.advance(hours=25)

    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "late"},
        headers=bearer(token),
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "messaging_window_closed"


async def test_doctor_a_gets_404_for_every_route_to_doctor_bs_conversation(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    doctor_a: tuple[LinkedDoctor, str],
    doctor_b: tuple[LinkedDoctor, str],
) -> None:
    _a, token_a = doctor_a
    _b, token_b = doctor_b
    await patient_writes(runtime, client, PAGE_B, "private to B", "mb")
    [conversation] = (await client.get("/api/v1/conversations", headers=bearer(token_b))).json()[
        "conversations"
    ]
    url = f"/api/v1/conversations/{conversation['id']}/messages"
    sends_before = len(fake_graph.sends)

    read = await client.get(url, headers=bearer(token_a))
    write = await client.post(url, json={"text": "intrude"}, headers=bearer(token_a))
    listing = await client.get("/api/v1/conversations", headers=bearer(token_a))
    await runtime.worker.run_until_idle()

    assert (read.status_code, write.status_code) == (404, 404)
    assert listing.json()["conversations"] == []
    assert "private to B" not in read.text + write.text + listing.text
    assert len(fake_graph.sends) == sends_before


async def test_reply_rules_round_trip_and_bad_values_are_422(
    client: httpx2.AsyncClient, doctor_a: tuple[LinkedDoctor, str]
) -> None:
    _doctor, token = doctor_a
    rules = {
        "enabled": True,
        "greeting_text": "Hello from the clinic",
        "cooldown_seconds": 3600,
        "emergency_words": ["urgent", " ", "dolor de pecho"],
        "emergency_text": "Call 112",
    }

    saved = await client.put("/api/v1/settings/replies", json=rules, headers=bearer(token))
    read = await client.get("/api/v1/settings/replies", headers=bearer(token))
    bad = await client.put(
        "/api/v1/settings/replies", json={**rules, "cooldown_seconds": -1}, headers=bearer(token)
    )
    extra = await client.put(
        "/api/v1/settings/replies", json={**rules, "surprise": 1}, headers=bearer(token)
    )

    assert saved.status_code == 200
    assert read.json()["emergency_words"] == ["urgent", "dolor de pecho"]
    assert (bad.status_code, extra.status_code) == (422, 422)
    assert bad.json()["error"]["code"] == "invalid_request"
    assert "-1" not in bad.json()["error"]["message"]


async def test_audit_shows_only_the_doctors_own_rows(
    client: httpx2.AsyncClient,
    doctor_a: tuple[LinkedDoctor, str],
    doctor_b: tuple[LinkedDoctor, str],
) -> None:
    _doctor, token = doctor_a
    other, _ = doctor_b

    rows = (await client.get("/api/v1/audit", headers=bearer(token))).json()["rows"]

    assert rows
    assert {"instagram_connected", "doctor_created"} <= {row["action"] for row in rows}
    assert other.id not in str(rows)
