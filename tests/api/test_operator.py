"""The operator's JSON API through HTTP: events and filters, replays, dead letters, unrouted pages,
every doctor's connection; only operators may call it, and no answer carries patient data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.app import create_app
from frontdesk.audit import hash_identifier
from frontdesk.auth.accounts import create_account
from frontdesk.clinic.connections import link_instagram, unlink_instagram
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.db.tables import audit_logs
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import (
    NOW,
    PASSWORD,
    add_linked_doctor,
    bearer,
    give_account,
    post_delivery,
    recent_ms,
    unscoped,
)

PAGE_A = "17841455512340001"
UNKNOWN_PAGE = "17849999999999999"
OTHER_UNKNOWN_PAGE = "17848888888888888"
PATIENT = "7321554890123456"
CANARY = "canary-text-do-not-show-7f3a"
OPS_EMAIL = "ops@clinic.test"
BASE = "/api/v1/operator"

ROUTES = [
    ("GET", f"{BASE}/events", None),
    ("GET", f"{BASE}/events/1", None),
    ("POST", f"{BASE}/events/1/replay", None),
    ("POST", f"{BASE}/events/replay", {"event_ids": [1]}),
    ("GET", f"{BASE}/dead-letters", None),
    ("POST", f"{BASE}/dead-letters/replay", None),
    ("GET", f"{BASE}/unrouted", None),
    ("GET", f"{BASE}/doctors", None),
]
ROUTE_IDS = [f"{method} {path.removeprefix(BASE)}" for method, path, _body in ROUTES]


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
    ) as client:
        yield client


@pytest.fixture
async def ops(runtime: Runtime, http: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """The client signed in as an operator, sending the CSRF header on every request."""
    async with transaction(runtime.engine) as connection:
        await create_account(
            connection, email=OPS_EMAIL, role="operator", password=PASSWORD, now=runtime.clock.now()
        )
    signed_in = await http.post(
        "/api/v1/auth/sign-in", json={"email": OPS_EMAIL, "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    http.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
    return http


def dm(page_id: str, mid: str, text: str = "hello", sender: str = PATIENT) -> dict[str, Any]:
    item = payloads.message_item(
        sender=sender, recipient=page_id, mid=mid, text=text, timestamp=recent_ms()
    )
    return payloads.delivery(payloads.entry(page_id, messaging=[item]))


def read_receipt(page_id: str, mid: str) -> dict[str, Any]:
    item = payloads.read_item(sender=PATIENT, recipient=page_id, mid=mid, timestamp=recent_ms())
    return payloads.delivery(payloads.entry(page_id, messaging=[item]))


async def deliver(client: httpx2.AsyncClient, payload: dict[str, Any]) -> None:
    response = await post_delivery(client, payload)
    assert response.status_code == 200
    assert response.json()["events"] >= 1


async def event_ids(ops: httpx2.AsyncClient, **params: str | int) -> list[int]:
    response = await ops.get(f"{BASE}/events", params=params)
    assert response.status_code == 200, response.text
    return [event["id"] for event in response.json()]


def assert_error(response: httpx2.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"code", "message", "correlation_id"}
    assert error["correlation_id"] == response.headers["x-correlation-id"]


async def replay_audits(runtime: Runtime) -> list[Any]:
    async with unscoped(runtime) as connection:
        rows = await connection.execute(
            select(audit_logs)
            .where(audit_logs.c.action == "event_replayed")
            .order_by(audit_logs.c.id)
        )
        return list(rows)


async def make_dead_event(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> int:
    """A DM to a linked doctor whose reply hits a Graph 500 on every attempt, until it is dead."""
    fake_graph.fail_next(4, status=500)
    await deliver(ops, dm(PAGE_A, "mid-dead", text="hello", sender=PATIENT))
    await runtime.worker.run_until_idle()
    for delay in (60, 300, 900):
        clock.advance(seconds=delay)
        await runtime.worker.run_until_idle()
    [dead] = await event_ids(ops, status="dead")
    return dead


# --- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_without_credentials_every_route_is_401(
    http: httpx2.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await http.request(method, path, json=body)

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_a_doctor_api_token_gets_403_on_every_route(
    runtime: Runtime,
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    token = await give_account(runtime, doctor)

    response = await http.request(method, path, json=body, headers=bearer(token))

    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_a_doctor_session_gets_403_on_every_route(
    runtime: Runtime,
    http: httpx2.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await give_account(runtime, doctor)
    signed_in = await http.post(
        "/api/v1/auth/sign-in", json={"email": doctor.email, "password": PASSWORD}
    )
    csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}

    response = await http.request(method, path, json=body, headers=csrf)

    assert_error(response, 403, "forbidden")


async def test_operator_routes_are_documented_with_a_summary_and_the_operator_tag(
    ops: httpx2.AsyncClient,
) -> None:
    spec = (await ops.get("/openapi.json")).json()

    operations = [
        operation
        for path, item in spec["paths"].items()
        if path.startswith(BASE)
        for operation in item.values()
    ]
    assert len(operations) == len(ROUTES)
    for operation in operations:
        assert operation["tags"] == ["operator"]
        assert operation["summary"].startswith("An operator")
        assert {"401", "403"} <= set(operation["responses"])


# --- events -----------------------------------------------------------------------------------


async def test_events_are_newest_first_and_every_filter_narrows_them(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await deliver(ops, dm(PAGE_A, "mid-1"))
    await deliver(ops, read_receipt(PAGE_A, "mid-1"))
    clock.advance(hours=1)
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2"))
    await runtime.worker.run_until_idle()
    clock.advance(hours=1)
    await deliver(ops, dm(PAGE_A, "mid-3"))
    message, read, unrouted, queued = sorted(await event_ids(ops))
    midpoint = (NOW + timedelta(minutes=30)).isoformat()

    assert await event_ids(ops) == [queued, unrouted, read, message]
    assert await event_ids(ops, limit=2) == [queued, unrouted]
    assert await event_ids(ops, status="processed") == [message]
    assert await event_ids(ops, status="queued") == [queued]
    assert await event_ids(ops, kind="read") == [read]
    assert await event_ids(ops, doctor_id=doctor.id) == [message], "read receipts are not routed"
    assert await event_ids(ops, reason="unknown_page") == [unrouted]
    assert await event_ids(ops, since=midpoint) == [queued, unrouted]
    assert await event_ids(ops, since=midpoint.replace("+00:00", "Z")) == [queued, unrouted]
    assert await event_ids(ops, until=midpoint) == [read, message]
    in_lagos = (NOW + timedelta(minutes=90)).astimezone(timezone(timedelta(hours=1)))
    assert await event_ids(ops, since=midpoint, until=in_lagos.isoformat()) == [unrouted]
    assert await event_ids(ops, status="failed", kind="message", reason="unknown_page") == [
        unrouted
    ]
    assert await event_ids(ops, kind="echo") == []


async def test_an_event_lists_ids_and_metadata_only(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()

    [event] = (await ops.get(f"{BASE}/events")).json()

    assert set(event) == {
        "id",
        "kind",
        "status",
        "reason",
        "doctor_id",
        "attempts",
        "received_at",
        "occurred_at",
        "last_error",
    }
    assert (event["kind"], event["status"], event["reason"]) == (
        "message",
        "failed",
        "unknown_page",
    )
    assert (event["doctor_id"], event["attempts"]) == (None, 1)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-12-04T12:00:00"},
        {"until": "2026-12-04T12:00:00"},
        {"since": "yesterday"},
        {"status": "lost"},
        {"limit": 0},
        {"limit": 501},
    ],
    ids=["naive-since", "naive-until", "not-a-date", "unknown-status", "limit-0", "limit-501"],
)
async def test_bad_event_filters_are_422_in_the_error_shape(
    ops: httpx2.AsyncClient, params: dict[str, str | int]
) -> None:
    response = await ops.get(f"{BASE}/events", params=params)

    assert_error(response, 422, "invalid_request")
    for value in params.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in response.text, "the submitted value is not echoed"


async def test_event_detail_shows_every_attempt_and_unknown_ids_are_404(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    dead = await make_dead_event(runtime, ops, fake_graph, clock)

    detail = await ops.get(f"{BASE}/events/{dead}")
    missing = await ops.get(f"{BASE}/events/999999")

    assert detail.status_code == 200
    body = detail.json()
    assert body["event"]["id"] == dead
    assert (body["event"]["status"], body["event"]["attempts"]) == ("dead", 4)
    assert [attempt["attempt"] for attempt in body["attempts"]] == [1, 2, 3, 4]
    assert [attempt["outcome"] for attempt in body["attempts"]] == ["queued"] * 3 + ["dead"]
    assert set(body["attempts"][0]) == {
        "attempt",
        "started_at",
        "finished_at",
        "outcome",
        "error_class",
        "error_code",
    }
    assert all(attempt["error_class"] for attempt in body["attempts"])
    assert_error(missing, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"{BASE}/events/{2**63}", None),
        ("POST", f"{BASE}/events/{2**63}/replay", None),
        ("POST", f"{BASE}/events/replay", {"event_ids": [2**63]}),
        ("GET", f"{BASE}/events/0", None),
        ("GET", f"{BASE}/events/abc", None),
    ],
    ids=["detail-too-big", "replay-too-big", "bulk-too-big", "zero", "not-a-number"],
)
async def test_event_ids_outside_a_64_bit_row_id_are_422_not_a_database_error(
    ops: httpx2.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await ops.request(method, path, json=body)

    assert_error(response, 422, "invalid_request")


# --- replay -----------------------------------------------------------------------------------


async def test_unknown_page_event_replayed_after_linking_the_doctor_is_processed(
    runtime: Runtime,
    ops: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()
    [event_id] = await event_ids(ops, reason="unknown_page")
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=UNKNOWN_PAGE, token="token-a")
    wakes: list[None] = []
    monkeypatch.setattr(runtime.worker, "wake", lambda: wakes.append(None))

    replayed = await ops.post(f"{BASE}/events/{event_id}/replay")
    queued = (await ops.get(f"{BASE}/events/{event_id}")).json()["event"]
    await runtime.worker.run_until_idle()
    after = (await ops.get(f"{BASE}/events/{event_id}")).json()

    assert replayed.status_code == 202
    assert replayed.json() == {"replayed": [event_id]}
    assert wakes, "the worker is woken"
    assert (queued["status"], queued["reason"], queued["attempts"]) == ("queued", None, 0)
    assert (after["event"]["status"], after["event"]["doctor_id"]) == ("processed", doctor.id)
    assert [attempt["outcome"] for attempt in after["attempts"]] == ["failed", "processed"]
    assert [send.recipient_id for send in fake_graph.sends] == [PATIENT]
    [audit] = await replay_audits(runtime)
    assert (audit.resource_type, audit.action, audit.status) == (
        "webhook",
        "event_replayed",
        "success",
    )
    assert audit.metadata == {"event_id": event_id}
    assert audit.correlation_id == replayed.headers["x-correlation-id"]


async def test_replaying_an_open_event_is_409_and_an_unknown_one_404(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    [event_id] = await event_ids(ops, status="queued")

    open_event = await ops.post(f"{BASE}/events/{event_id}/replay")
    unknown = await ops.post(f"{BASE}/events/999999/replay")

    assert_error(open_event, 409, "not_replayable")
    assert_error(unknown, 404, "not_found")
    assert await replay_audits(runtime) == []


async def test_bulk_replay_reports_what_it_replayed_and_skipped(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await deliver(ops, read_receipt(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()
    await deliver(ops, dm(OTHER_UNKNOWN_PAGE, "mid-2"))
    failed, ignored, still_queued = sorted(await event_ids(ops))

    response = await ops.post(
        f"{BASE}/events/replay",
        json={"event_ids": [failed, still_queued, 999999, ignored, failed]},
    )

    assert response.status_code == 202
    assert response.json() == {"replayed": [failed, ignored], "skipped": [still_queued, 999999]}
    assert sorted(await event_ids(ops, status="queued")) == [failed, ignored, still_queued]
    audited = [row.metadata["event_id"] for row in await replay_audits(runtime)]
    assert audited == [failed, ignored]


@pytest.mark.parametrize(
    "body",
    [{"event_ids": []}, {"event_ids": list(range(1, 502))}, {}, {"event_ids": [1], "all": True}],
    ids=["empty", "too-many", "missing", "extra-field"],
)
async def test_bulk_replay_refuses_a_bad_body_with_422(
    ops: httpx2.AsyncClient, body: dict[str, Any]
) -> None:
    response = await ops.post(f"{BASE}/events/replay", json=body)

    assert_error(response, 422, "invalid_request")


# --- dead letters -----------------------------------------------------------------------------


async def test_dead_letters_are_listed_and_replaying_all_processes_them(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    dead = await make_dead_event(runtime, ops, fake_graph, clock)
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-unrouted"))
    await runtime.worker.run_until_idle()

    listed = await ops.get(f"{BASE}/dead-letters")
    replayed = await ops.post(f"{BASE}/dead-letters/replay")
    await runtime.worker.run_until_idle()
    after = await ops.get(f"{BASE}/dead-letters")
    again = await ops.post(f"{BASE}/dead-letters/replay")

    assert listed.status_code == 200
    [letter] = listed.json()
    assert (letter["id"], letter["status"], letter["attempts"]) == (dead, "dead", 4)
    assert "graph_unavailable" in letter["last_error"]
    assert replayed.status_code == 202
    assert replayed.json() == {"replayed_count": 1}
    assert after.json() == []
    assert again.json() == {"replayed_count": 0}
    assert await event_ids(ops, status="processed") == [dead]
    assert await event_ids(ops, reason="unknown_page") != [], "only dead events are replayed"
    assert len(fake_graph.sends) == 1
    assert [row.metadata for row in await replay_audits(runtime)] == [{"event_id": dead}]


async def test_dead_letters_limit_is_bounded(ops: httpx2.AsyncClient) -> None:
    assert_error(await ops.get(f"{BASE}/dead-letters", params={"limit": 0}), 422, "invalid_request")
    assert (await ops.get(f"{BASE}/dead-letters", params={"limit": 500})).status_code == 200


# --- unrouted ---------------------------------------------------------------------------------


async def test_unrouted_events_are_grouped_by_a_hash_of_the_page_id(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    clock.advance(minutes=10)
    await deliver(ops, dm(OTHER_UNKNOWN_PAGE, "mid-2"))
    clock.advance(minutes=10)
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-3"))
    await deliver(ops, dm(PAGE_A, "mid-4"))
    await runtime.worker.run_until_idle()

    response = await ops.get(f"{BASE}/unrouted")
    limited = await ops.get(f"{BASE}/unrouted", params={"limit": 1})

    assert response.status_code == 200
    groups = response.json()
    assert [group["page_id_hash"] for group in groups] == [
        hash_identifier(UNKNOWN_PAGE),
        hash_identifier(OTHER_UNKNOWN_PAGE),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{16}", group["page_id_hash"]) for group in groups)
    first, second = groups
    assert first["events"] == 2
    assert first["first_received_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert first["last_received_at"] == (NOW + timedelta(minutes=20)).isoformat().replace(
        "+00:00", "Z"
    )
    assert second["events"] == 1
    for page in (UNKNOWN_PAGE, OTHER_UNKNOWN_PAGE, PAGE_A):
        assert page not in response.text
    assert len(limited.json()) == 1


# --- doctors ----------------------------------------------------------------------------------


async def test_doctors_lists_everyone_with_the_state_of_their_connection(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    now = clock.now()
    expires = now + timedelta(days=60)
    async with transaction(runtime.engine) as connection:
        active = await create_doctor(connection, name="Dr Active", email="a@clinic.test", now=now)
        await link_instagram(
            connection,
            runtime.keyring,
            doctor_id=active.id,
            instagram_page_id=PAGE_A,
            access_token="secret-token-a",
            username="clinic_active",
            token_expires_at=expires,
            now=now,
        )
    clock.advance(seconds=1)
    async with transaction(runtime.engine) as connection:
        lonely = await create_doctor(
            connection, name="Dr Lonely", email="b@clinic.test", now=clock.now()
        )
    clock.advance(seconds=1)
    async with transaction(runtime.engine) as connection:
        gone = await create_doctor(
            connection, name="Dr Gone", email="c@clinic.test", now=clock.now()
        )
        await link_instagram(
            connection,
            runtime.keyring,
            doctor_id=gone.id,
            instagram_page_id=UNKNOWN_PAGE,
            access_token="tok-g",
            now=clock.now(),
        )
        await unlink_instagram(connection, doctor_id=gone.id, now=clock.now())
    await deliver(ops, dm(PAGE_A, "mid-1"))
    await runtime.worker.run_until_idle()

    response = await ops.get(f"{BASE}/doctors")

    assert response.status_code == 200
    listed = {doctor["id"]: doctor for doctor in response.json()}
    assert list(listed) == [active.id, lonely.id, gone.id]
    first = listed[active.id]
    assert (first["name"], first["email"]) == ("Dr Active", "a@clinic.test")
    assert first["instagram"]["status"] == "active"
    assert first["instagram"]["username"] == "clinic_active"
    assert first["instagram"]["token_expires_at"] == expires.isoformat().replace("+00:00", "Z")
    assert first["instagram"]["connected_at"] is not None
    assert first["instagram"]["last_webhook_at"] is not None
    assert first["instagram"]["last_send_at"] is not None
    assert listed[lonely.id]["instagram"] == {
        "status": "not_connected",
        "username": None,
        "connected_at": None,
        "token_expires_at": None,
        "last_webhook_at": None,
        "last_send_at": None,
    }
    assert listed[gone.id]["instagram"]["status"] == "disconnected"
    for secret in ("secret-token-a", "tok-g", PAGE_A, UNKNOWN_PAGE):
        assert secret not in response.text


# --- no patient data --------------------------------------------------------------------------


async def test_no_operator_answer_carries_message_text_or_patient_ids(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    fake_graph.fail_next(4, status=500)
    await deliver(ops, dm(PAGE_A, "mid-1", text=CANARY))
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2", text=CANARY))
    await runtime.worker.run_until_idle()
    for delay in (60, 300, 900):
        clock.advance(seconds=delay)
        await runtime.worker.run_until_idle()
    ids = await event_ids(ops)
    assert len(ids) == 2

    answers = [
        await ops.get(f"{BASE}/events"),
        *[await ops.get(f"{BASE}/events/{event_id}") for event_id in ids],
        await ops.get(f"{BASE}/dead-letters"),
        await ops.get(f"{BASE}/unrouted"),
        await ops.get(f"{BASE}/doctors"),
        await ops.post(f"{BASE}/events/replay", json={"event_ids": ids}),
    ]
    await runtime.worker.run_until_idle()
    answers += [
        await ops.get(f"{BASE}/events"),
        await ops.post(f"{BASE}/dead-letters/replay"),
    ]

    for answer in answers:
        assert answer.status_code in (200, 202), answer.text
        for secret in (CANARY, PATIENT, "mid-1", "mid-2", UNKNOWN_PAGE, "token-a"):
            assert secret not in answer.text


async def test_an_operator_replay_without_the_csrf_header_is_refused(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()
    [event_id] = await event_ids(ops)
    del ops.headers["X-CSRF-Token"]

    response = await ops.post(f"{BASE}/events/{event_id}/replay")

    assert_error(response, 403, "csrf_failed")
    assert await event_ids(ops, status="failed") == [event_id]
