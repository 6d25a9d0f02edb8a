"""The operator's pages through HTTP: who may see them, CSRF on every form, health numbers and
chart, events and timelines, dead-letter replay, unrouted hashes, audit, inviting doctors; and
no page ever shows message text, patient ids or page ids."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.audit import hash_identifier
from frontdesk.auth.accounts import create_account
from frontdesk.clinic.connections import mark_needs_reauth
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.db.tables import audit_logs, doctors
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.inbox.health import bucket_edges
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import (
    NOW,
    PASSWORD,
    add_linked_doctor,
    give_account,
    post_delivery,
    recent_ms,
    unscoped,
)

PAGE_A = "17841455512340001"
UNKNOWN_PAGE = "17849999999999999"
PATIENT = "7321554890123456"
CANARY = "canary-text-do-not-show-7f3a"
OPS_EMAIL = "ops@clinic.test"

PAGES = [
    "/ops",
    "/ops/events",
    "/ops/dead-letters",
    "/ops/unrouted",
    "/ops/audit",
    "/ops/doctors",
]
POSTS = ["/ops/events/1/replay", "/ops/dead-letters/replay", "/ops/doctors"]


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in the page"
    return match.group(1)


async def sign_in(client: httpx2.AsyncClient, email: str) -> None:
    form = await client.get("/sign-in")
    answer = await client.post(
        "/sign-in",
        data={"email": email, "password": PASSWORD, "form_token": hidden(form.text, "form_token")},
    )
    assert answer.status_code == 303, answer.text


@pytest.fixture
async def ops(runtime: Runtime, client: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """The client signed in as an operator through the sign-in page."""
    async with transaction(runtime.engine) as connection:
        await create_account(
            connection, email=OPS_EMAIL, role="operator", password=PASSWORD, now=runtime.clock.now()
        )
    await sign_in(client, OPS_EMAIL)
    return client


async def csrf(ops: httpx2.AsyncClient, path: str = "/ops/doctors") -> str:
    return hidden((await ops.get(path)).text, "csrf_token")


def dm(page_id: str, mid: str, text: str = "hello") -> dict[str, Any]:
    item = payloads.message_item(
        sender=PATIENT, recipient=page_id, mid=mid, text=text, timestamp=recent_ms()
    )
    return payloads.delivery(payloads.entry(page_id, messaging=[item]))


async def deliver(client: httpx2.AsyncClient, payload: dict[str, Any]) -> None:
    response = await post_delivery(client, payload)
    assert response.status_code == 200, response.text


async def make_dead_event(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    """A DM to a linked doctor whose reply hits a Graph 500 on every attempt, until it is dead."""
    fake_graph.fail_next(4, status=500)
    await deliver(client, dm(PAGE_A, "mid-dead", text=CANARY))
    await runtime.worker.run_until_idle()
    for delay in (60, 300, 900):
        clock.advance(seconds=delay)
        await runtime.worker.run_until_idle()


def event_ids(html: str) -> list[int]:
    """The events a listing links to, in the order shown."""
    return [int(found) for found in re.findall(r'href="/ops/events/(\d+)"', html)]


def stat(html: str, stat_id: str) -> str:
    match = re.search(rf'id="{stat_id}">.*?<b>(.*?)</b>', html, re.S)
    assert match, f"no {stat_id} on the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- who may see them ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_renders_for_an_operator(ops: httpx2.AsyncClient, path: str) -> None:
    page = await ops.get(path)

    assert page.status_code == 200, page.text
    assert "text/html" in page.headers["content-type"]
    assert 'href="/ops/dead-letters"' in page.text, "the operator's navigation is shown"


@pytest.mark.parametrize("path", [*PAGES, "/ops/events/1"])
async def test_anonymous_visitors_are_sent_to_sign_in(
    client: httpx2.AsyncClient, path: str
) -> None:
    page = await client.get(path)

    assert page.status_code == 303
    assert page.headers["location"].startswith("/sign-in")


@pytest.mark.parametrize("path", [*PAGES, "/ops/events/1"])
async def test_a_signed_in_doctor_is_sent_to_sign_in(
    runtime: Runtime, client: httpx2.AsyncClient, path: str
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await give_account(runtime, doctor)
    await sign_in(client, doctor.email)

    page = await client.get(path)

    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/ops"


@pytest.mark.parametrize("path", POSTS)
async def test_a_form_without_its_csrf_token_is_refused(
    runtime: Runtime, ops: httpx2.AsyncClient, path: str
) -> None:
    response = await ops.post(path, data={"event_id": "1", "name": "Dr X", "email": "x@c.test"})
    wrong = await ops.post(path, data={"csrf_token": "not-the-token", "name": "Dr X"})

    assert response.status_code == 403
    assert wrong.status_code == 403
    async with unscoped(runtime) as connection:
        assert list(await connection.execute(select(doctors))) == []


@pytest.mark.parametrize("path", POSTS)
async def test_anonymous_forms_are_sent_to_sign_in(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.post(path, data={"csrf_token": "x"})

    assert response.status_code == 303
    assert response.headers["location"].startswith("/sign-in")


# --- health -----------------------------------------------------------------------------------


async def test_health_shows_queue_depth_oldest_age_and_dead_letters(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    empty = (await ops.get("/ops")).text
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2"))
    clock.advance(minutes=5)
    queued = (await ops.get("/ops")).text
    await runtime.worker.run_until_idle()
    await make_dead_event(runtime, ops, fake_graph, clock)
    after = (await ops.get("/ops")).text

    assert (stat(empty, "queue-depth"), stat(empty, "dead-letters")) == ("0", "0")
    assert stat(empty, "oldest-queued") == "—"
    assert stat(queued, "queue-depth") == "2"
    assert stat(queued, "oldest-queued") == "5 min"
    assert (stat(after, "queue-depth"), stat(after, "dead-letters")) == ("0", "1")
    assert stat(after, "failures") == "3", "two unknown pages failed and one event is dead"


async def test_health_chart_is_an_svg_with_one_titled_bar_per_ten_minutes(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await deliver(ops, dm(PAGE_A, "mid-1"))
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2"))
    await runtime.worker.run_until_idle()
    clock.advance(minutes=25)

    page = (await ops.get("/ops")).text

    [svg] = re.findall(r"<svg .*?</svg>", page, re.S)
    buckets = re.findall(r'<g class="bucket">\s*<title>(.*?)</title>', svg, re.S)
    assert len(buckets) == 36
    assert len(bucket_edges(clock.now())) == 37
    assert "<figcaption" in page
    assert 'aria-labelledby="chart-caption"' in svg
    busy = [title for title in buckets if "1 processed" in title]
    assert busy == ["12:00–12:10 UTC: 1 processed (0.1/min), 1 failed or dead"]
    assert buckets[-1].startswith("12:20–12:30 UTC: 0 processed")
    assert svg.count('class="processed"') == 1
    assert svg.count('class="failures"') == 1
    assert "<script" not in page.split("</head>", 1)[1], "the chart needs no script"


async def test_health_counts_signature_failures_and_lists_connections_needing_reauth(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr Expired", page_id=PAGE_A, token="token-a")
    await add_linked_doctor(runtime, name="Dr Fine", page_id=UNKNOWN_PAGE, token="token-b")
    clock.advance(hours=1)
    async with doctor_transaction(runtime.engine, doctor.id) as connection:
        await mark_needs_reauth(
            connection, doctor_id=doctor.id, now=clock.now(), correlation_id=None
        )
    forged = await post_delivery(ops, dm(PAGE_A, "mid-1"), secret="not-the-app-secret")

    page = (await ops.get("/ops")).text

    assert forged.status_code == 401
    assert stat(page, "signature-failures") == "1"
    section = page.split('id="reauth"', 1)[1]
    assert "Dr Expired" in section
    assert "Dr Fine" not in section
    assert "2026-12-04 13:00 UTC" in section


# --- events -----------------------------------------------------------------------------------


async def test_events_are_newest_first_and_filter_by_status_kind_and_time(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await deliver(ops, dm(PAGE_A, "mid-1"))
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2"))
    await runtime.worker.run_until_idle()
    clock.advance(hours=1)
    await deliver(ops, dm(PAGE_A, "mid-3"))

    everything = await ops.get("/ops/events")
    processed = await ops.get("/ops/events", params={"status": "processed"})
    queued = await ops.get("/ops/events", params={"status": "queued", "kind": "message"})
    by_doctor = await ops.get("/ops/events", params={"doctor_id": doctor.id})
    late = await ops.get("/ops/events", params={"since": "2026-12-04T12:30"})
    early = await ops.get("/ops/events", params={"until": "2026-12-04T12:30:00+00:00"})
    none = await ops.get("/ops/events", params={"kind": "echo"})
    bad = await ops.get("/ops/events", params={"status": "lost", "since": "yesterday"})
    far = await ops.get("/ops/events", params={"until": "0001-01-01T00:00+05:00"})

    first, second, third = sorted(event_ids(everything.text))
    assert everything.status_code == 200
    assert event_ids(everything.text) == [third, second, first]
    assert event_ids(processed.text) == [first]
    assert event_ids(queued.text) == [third]
    assert event_ids(by_doctor.text) == [first], "a queued event is not routed yet"
    assert event_ids(late.text) == [third]
    assert event_ids(early.text) == [second, first]
    assert "Dr A" in processed.text
    assert "unknown_page" in everything.text
    assert event_ids(none.text) == []
    assert "No events match these filters" in none.text
    assert bad.status_code == 400
    assert far.status_code == 400
    assert "Choose a status" in bad.text
    assert "not a date" in bad.text


async def test_the_events_page_says_what_to_do_when_there_are_none(
    ops: httpx2.AsyncClient,
) -> None:
    page = await ops.get("/ops/events")

    assert "No events yet" in page.text
    assert "webhook subscription" in page.text


async def test_an_event_page_shows_its_timeline_and_every_attempt(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await make_dead_event(runtime, ops, fake_graph, clock)
    [dead] = event_ids((await ops.get("/ops/events", params={"status": "dead"})).text)

    page = await ops.get(f"/ops/events/{dead}")

    assert page.status_code == 200
    timeline = page.text.split('class="timeline"', 1)[1]
    assert timeline.count('class="attempt"') == 4
    for number in (1, 2, 3, 4):
        assert f"Attempt {number}" in timeline
    assert "Received" in timeline
    assert "Result" in timeline
    assert "graph_unavailable" in timeline
    assert "2026-12-04 12:00:00 UTC" in timeline, "received, to the second"
    assert "2026-12-04 12:21:00 UTC" in timeline, "the last attempt finished after 60+300+900 s"
    assert 'action="/ops/events/' in page.text
    assert "Replay</button>" in page.text


async def test_an_open_event_has_no_replay_button_and_unknown_ids_are_404(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    [queued] = event_ids((await ops.get("/ops/events")).text)

    page = await ops.get(f"/ops/events/{queued}")
    missing = [await ops.get(f"/ops/events/{path}") for path in ("999999", "abc", "0", 2**64)]

    assert page.status_code == 200
    assert "/replay" not in page.text
    assert "No attempt yet" in page.text
    for answer in missing:
        assert answer.status_code == 404
        assert "There is no such event" in answer.text


async def test_replaying_from_the_event_page_queues_it_and_audits_it(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()
    [event_id] = event_ids((await ops.get("/ops/events")).text)
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=UNKNOWN_PAGE, token="token-a")
    token = hidden((await ops.get(f"/ops/events/{event_id}")).text, "csrf_token")

    replayed = await ops.post(f"/ops/events/{event_id}/replay", data={"csrf_token": token})
    again = await ops.post(f"/ops/events/{event_id}/replay", data={"csrf_token": token})
    notice = await ops.get(replayed.headers["location"])
    await runtime.worker.run_until_idle()
    missing = await ops.post("/ops/events/999999/replay", data={"csrf_token": token})

    assert replayed.status_code == 303
    assert replayed.headers["location"] == f"/ops/events/{event_id}?replayed=1"
    assert again.headers["location"] == f"/ops/events/{event_id}?replayed=0"
    assert "Queued again" in notice.text
    assert event_ids((await ops.get("/ops/events", params={"status": "processed"})).text) == [
        event_id
    ]
    assert event_ids((await ops.get("/ops/events", params={"doctor_id": doctor.id})).text) == [
        event_id
    ]
    assert missing.status_code == 404
    async with unscoped(runtime) as connection:
        audits = list(
            await connection.execute(
                select(audit_logs).where(audit_logs.c.action == "event_replayed")
            )
        )
    assert [audit.metadata for audit in audits] == [{"event_id": event_id}]


# --- dead letters -----------------------------------------------------------------------------


async def test_dead_letters_empty_state_says_nothing_is_lost(ops: httpx2.AsyncClient) -> None:
    page = await ops.get("/ops/dead-letters")

    assert (
        "No dead letters — every event either succeeded or failed for a known reason." in page.text
    )


async def test_replay_selected_dead_letters_processes_them(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await make_dead_event(runtime, ops, fake_graph, clock)
    listing = await ops.get("/ops/dead-letters")
    [dead] = event_ids(listing.text)
    boxes = re.findall(r'type="checkbox" name="event_id" value="(\d+)"', listing.text)

    replayed = await ops.post(
        "/ops/dead-letters/replay",
        data={"csrf_token": hidden(listing.text, "csrf_token"), "event_id": [str(dead), "abc"]},
    )
    notice = await ops.get(replayed.headers["location"])
    await runtime.worker.run_until_idle()
    after = await ops.get("/ops/dead-letters")

    assert boxes == [str(dead)]
    assert "Replay selected" in listing.text
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/ops/dead-letters?replayed=1&skipped=1"
    assert "Replayed 1 dead letter;" in notice.text
    assert "1 could not be replayed" in notice.text
    assert event_ids((await ops.get("/ops/events", params={"status": "processed"})).text) == [dead]
    assert "No dead letters" in after.text
    assert len(fake_graph.sends) == 1


async def test_a_stale_selection_replays_only_what_is_still_dead(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()
    [failed] = event_ids((await ops.get("/ops/events")).text)

    replayed = await ops.post(
        "/ops/dead-letters/replay",
        data={"csrf_token": await csrf(ops), "event_id": [str(failed)]},
    )

    assert replayed.headers["location"] == "/ops/dead-letters?replayed=0&skipped=1"
    assert event_ids((await ops.get("/ops/events", params={"status": "failed"})).text) == [failed]


async def test_a_dead_letter_row_replays_on_its_own_and_returns_to_the_list(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await make_dead_event(runtime, ops, fake_graph, clock)
    listing = await ops.get("/ops/dead-letters")
    [dead] = event_ids(listing.text)
    assert f'formaction="/ops/events/{dead}/replay"' in listing.text

    replayed = await ops.post(
        f"/ops/events/{dead}/replay",
        data={"csrf_token": hidden(listing.text, "csrf_token"), "return_to": "dead-letters"},
    )

    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/ops/dead-letters?replayed=1"
    assert event_ids((await ops.get("/ops/events", params={"status": "queued"})).text) == [dead]


# --- unrouted ---------------------------------------------------------------------------------


async def test_unrouted_shows_the_page_hash_never_the_page_id(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    empty = await ops.get("/ops/unrouted")
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-2"))
    await runtime.worker.run_until_idle()

    page = await ops.get("/ops/unrouted")

    assert "No unrouted events" in empty.text
    [shown] = re.findall(r"<code>([0-9a-f]{16})</code>", page.text)
    assert shown == hash_identifier(UNKNOWN_PAGE)
    assert UNKNOWN_PAGE not in page.text
    assert re.search(r"<td>2</td>", page.text), "both events are counted"
    assert "ask the clinic to connect this account" in page.text


# --- audit ------------------------------------------------------------------------------------


async def test_audit_lists_rows_newest_first_with_filters_and_metadata(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr Audit", page_id=PAGE_A, token="token-a")
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-1"))
    await runtime.worker.run_until_idle()

    everything = await ops.get("/ops/audit")
    processed = await ops.get(
        "/ops/audit", params={"action": "webhook_processed", "status": "failure"}
    )
    connected = await ops.get(
        "/ops/audit", params={"resource_type": "instagram_connection", "doctor_id": doctor.id}
    )
    nothing = await ops.get("/ops/audit", params={"action": "no_such_action"})

    assert everything.status_code == 200
    assert "doctor_created" in everything.text
    assert "webhook_received" in everything.text
    assert everything.text.index("webhook_processed") < everything.text.index("doctor_created")
    assert "webhook_processed" in processed.text
    assert "doctor_created" not in processed.text
    assert f"page_id_hash={hash_identifier(UNKNOWN_PAGE)}" in processed.text
    assert "instagram_connected" in connected.text
    assert "Dr Audit" in connected.text
    assert "webhook_processed" not in connected.text
    assert "No audit rows match these filters" in nothing.text


# --- doctors ----------------------------------------------------------------------------------


async def test_doctors_page_lists_connection_states(
    runtime: Runtime, ops: httpx2.AsyncClient, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr Linked", page_id=PAGE_A, token="secret-token")
    clock.advance(seconds=1)
    async with transaction(runtime.engine) as connection:
        await create_doctor(connection, name="Dr Lonely", email="b@clinic.test", now=clock.now())
    await deliver(ops, dm(PAGE_A, "mid-1"))
    await runtime.worker.run_until_idle()

    page = await ops.get("/ops/doctors")

    rows = page.text.split("<tbody>", 1)[1]
    linked, lonely = rows.split("</tr>")[:2]
    assert "Dr Linked" in linked
    assert 'badge active">active' in linked
    assert "2026-12-04 12:00 UTC" in linked, "the last webhook"
    assert "Dr Lonely" in lonely
    assert "not connected" in lonely
    shown = page.text.replace(f"{PAGE_A}@clinic.test", "")  # the fixture's email for the doctor
    for secret in ("secret-token", PAGE_A):
        assert secret not in shown


async def test_inviting_a_doctor_shows_the_invite_link_once(
    runtime: Runtime, ops: httpx2.AsyncClient
) -> None:
    token = await csrf(ops)

    invited = await ops.post(
        "/ops/doctors", data={"csrf_token": token, "name": "Dr New", "email": "New@Clinic.test"}
    )
    taken = await ops.post(
        "/ops/doctors", data={"csrf_token": token, "name": "Dr Two", "email": "new@clinic.test"}
    )
    operator_email = await ops.post(
        "/ops/doctors", data={"csrf_token": token, "name": "Dr Ops", "email": OPS_EMAIL}
    )
    later = await ops.get("/ops/doctors")

    assert invited.status_code == 201
    assert invited.headers["cache-control"] == "no-store"
    link = re.search(r'value="(http://frontdesk\.test/invite/[^"]+)"', invited.text)
    assert link, "the invite link is shown"
    assert "/invite/" not in later.text, "and only once"
    assert "Dr New" in later.text
    assert "new@clinic.test" in later.text
    assert taken.status_code == 400
    assert "already exists" in taken.text
    assert 'value="Dr Two"' in taken.text
    assert operator_email.status_code == 400, "an account with that email exists"
    async with unscoped(runtime) as connection:
        names = [row.name for row in await connection.execute(select(doctors))]
    assert names == ["Dr New"], "a refused invite leaves no doctor behind"
    accept = await ops.get(link.group(1).removeprefix("http://frontdesk.test"))
    assert accept.status_code == 200
    assert "Set password" in accept.text


# --- no patient data --------------------------------------------------------------------------


async def test_no_operator_page_shows_message_text_or_patient_or_page_ids(
    runtime: Runtime, ops: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    await make_dead_event(runtime, ops, fake_graph, clock)
    await deliver(ops, dm(UNKNOWN_PAGE, "mid-unrouted", text=CANARY))
    await runtime.worker.run_until_idle()
    ids = event_ids((await ops.get("/ops/events")).text)
    assert len(ids) == 2

    pages = [await ops.get(path) for path in PAGES]
    pages += [await ops.get(f"/ops/events/{event_id}") for event_id in ids]
    pages += [await ops.get("/ops/events", params={"status": status}) for status in ("dead",)]

    for page in pages:
        assert page.status_code == 200, page.text
        shown = page.text.replace(f"{PAGE_A}@clinic.test", "")  # the fixture's doctor email
        for secret in (CANARY, PATIENT, "mid-dead", "mid-unrouted", PAGE_A, UNKNOWN_PAGE):
            assert secret not in shown
        assert "token-a" not in shown
    assert NOW.strftime("%Y-%m-%d") in pages[1].text
