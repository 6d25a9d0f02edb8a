"""Connect Instagram through the fake Graph API's OAuth, both logins, and every way it can fail."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.clinic.connections import load_access_token
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.db.tables import doctor_instagram, webhook_events
from frontdesk.db.tenancy import doctor_transaction
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
    unscoped,
)

IG_ACCOUNT = "17841400000000777"
PATIENT = "7321554890123456"


@pytest.fixture
async def doctor(runtime: Runtime) -> tuple[str, str]:
    """A doctor with an account and API token but no connection yet: (doctor id, token)."""
    async with transaction(runtime.engine) as connection:
        created = await create_doctor(
            connection, name="Dr New", email="new@clinic.test", now=runtime.clock.now()
        )
    token = await give_account(
        runtime, LinkedDoctor(id=created.id, page_id="", token="", email=created.email)
    )
    return created.id, token


async def browser_round_trip(
    client: httpx2.AsyncClient, fake_graph: FakeGraphApi, token: str, login: str = "instagram"
) -> httpx2.Response:
    """What the doctor's browser does: open Meta's authorize URL, come back to the callback."""
    started = await client.post(f"/api/v1/instagram/connect?login={login}", headers=bearer(token))
    authorize_url = started.json()["authorize_url"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake_graph.app)) as meta:
        meta_answer = await meta.get(authorize_url)
    assert meta_answer.status_code == 302
    back = urlsplit(meta_answer.headers["location"].removesuffix("#_"))
    assert back.path == "/api/v1/instagram/callback"
    return await client.get(f"{back.path}?{back.query}", headers=bearer(token))


async def connection_of(client: httpx2.AsyncClient, token: str) -> dict[str, object]:
    return (await client.get("/api/v1/instagram/connection", headers=bearer(token))).json()  # type: ignore[no-any-return]


async def test_instagram_login_connects_subscribes_and_routes_webhooks_to_the_doctor(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic.rivera")

    answer = await browser_round_trip(client, fake_graph, token)
    status = await connection_of(client, token)
    dm = payloads.dm_delivery(page_id=IG_ACCOUNT, sender=PATIENT, text="hi", timestamp=recent_ms())
    await post_delivery(client, dm)
    await runtime.worker.run_until_idle()

    assert answer.status_code == 303
    assert answer.headers["location"] == "/?instagram=connected"
    assert status["status"] == "active"
    assert status["username"] == "clinic.rivera"
    assert status["token_expires_at"] is not None
    assert IG_ACCOUNT in fake_graph.subscriptions
    [send] = fake_graph.sends
    assert send.account_id == IG_ACCOUNT
    assert send.access_token.startswith("IGlong-")
    async with unscoped(runtime) as connection:
        routed = (
            await connection.execute(
                select(webhook_events.c.doctor_id).where(webhook_events.c.provider == "instagram")
            )
        ).scalars()
    assert list(routed) == [doctor_id]


async def test_the_authorize_url_asks_for_the_messaging_scopes_with_a_signed_state(
    client: httpx2.AsyncClient, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor

    started = await client.post("/api/v1/instagram/connect", headers=bearer(token))

    query = parse_qs(urlsplit(started.json()["authorize_url"]).query)
    assert query["scope"] == ["instagram_business_basic,instagram_business_manage_messages"]
    assert query["redirect_uri"] == ["http://frontdesk.test/api/v1/instagram/callback"]
    nonce, _, signature = query["state"][0].partition(".")
    assert len(nonce) >= 24
    assert len(signature) == 32


async def test_a_declined_authorization_goes_back_to_the_page_and_stores_nothing(
    client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    fake_graph.decline_next_authorization()

    answer = await browser_round_trip(client, fake_graph, token)

    assert answer.headers["location"] == "/?instagram=declined"
    assert (await connection_of(client, token))["status"] == "not_connected"


async def test_bad_reused_expired_and_foreign_states_are_400(
    runtime: Runtime,
    client: httpx2.AsyncClient,
    fake_graph: FakeGraphApi,
    clock: FixedClock,
    doctor: tuple[str, str],
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    other = await add_linked_doctor(
        runtime, name="Dr Other", page_id="17841499999999999", token="x"
    )
    other_token = await give_account(runtime, other)

    async def fresh_state(who: str) -> str:
        started = await client.post("/api/v1/instagram/connect", headers=bearer(who))
        return parse_qs(urlsplit(started.json()["authorize_url"]).query)["state"][0]

    async def callback(state: str, who: str = token) -> httpx2.Response:
        code = fake_graph.issue_code(IG_ACCOUNT)
        return await client.get(
            "/api/v1/instagram/callback", params={"code": code, "state": state}, headers=bearer(who)
        )

    garbage = await callback("not-a-state")
    missing = await client.get(
        "/api/v1/instagram/callback", params={"code": "x"}, headers=bearer(token)
    )
    used = await fresh_state(token)
    first, reused = await callback(used), await callback(used)
    foreign = await callback(await fresh_state(token), who=other_token)
    stale = await fresh_state(token)
    clock.advance(minutes=11)
    expired = await callback(stale)

    assert first.status_code == 303
    for refused in (garbage, missing, reused, foreign, expired):
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_state"


async def test_an_account_owned_by_another_doctor_is_409_and_nothing_changes(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    owner = await add_linked_doctor(
        runtime, name="Dr Owner", page_id=IG_ACCOUNT, token="owner-token"
    )
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")

    answer = await browser_round_trip(client, fake_graph, token)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "account_owned_by_another_doctor"
    assert fake_graph.subscriptions == set()
    assert (await connection_of(client, token))["status"] == "not_connected"
    async with unscoped(runtime) as connection:
        holders = (await connection.execute(select(doctor_instagram.c.doctor_id))).scalars().all()
    assert list(holders) == [owner.id]


@pytest.mark.parametrize("endpoint", ["oauth_token", "long_lived_token", "me", "subscribe"])
async def test_a_graph_failure_at_any_step_is_502_naming_the_step_and_stores_nothing(
    client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str], endpoint: str
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    fake_graph.fail_next(endpoint=endpoint, status=500, code=2)  # type: ignore[arg-type]

    answer = await browser_round_trip(client, fake_graph, token)

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "graph_error"
    assert "step" in answer.json()["error"]["message"]
    assert (await connection_of(client, token))["status"] == "not_connected"


async def test_reconnecting_the_same_account_refreshes_the_token_in_place(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    await browser_round_trip(client, fake_graph, token)
    async with unscoped(runtime) as connection:
        first = (await connection.execute(select(doctor_instagram))).one()

    await browser_round_trip(client, fake_graph, token)

    async with unscoped(runtime) as connection:
        [second] = (await connection.execute(select(doctor_instagram))).all()
    assert second.id == first.id
    assert second.access_token_encrypted != first.access_token_encrypted


async def test_disconnect_unsubscribes_deletes_the_token_and_later_webhooks_route_as_unknown(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    await browser_round_trip(client, fake_graph, token)

    answer = await client.delete("/api/v1/instagram/connection", headers=bearer(token))
    again = await client.delete("/api/v1/instagram/connection", headers=bearer(token))
    dm = payloads.dm_delivery(page_id=IG_ACCOUNT, sender=PATIENT, text="hi", timestamp=recent_ms())
    await post_delivery(client, dm)
    await runtime.worker.run_until_idle()

    assert answer.json() == {"status": "disconnected", "unsubscribed": True}
    assert again.status_code == 404
    assert IG_ACCOUNT not in fake_graph.subscriptions
    assert (await connection_of(client, token))["status"] == "disconnected"
    async with unscoped(runtime) as connection:
        row = (await connection.execute(select(doctor_instagram))).one()
        event = (
            await connection.execute(
                select(webhook_events).where(webhook_events.c.provider == "instagram")
            )
        ).one()
    assert row.access_token_encrypted is None
    assert (event.status, event.reason) == ("failed", "unknown_page")


async def test_facebook_login_with_one_page_connects_that_page(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_facebook_page("104000000000001", "Clinic Page", IG_ACCOUNT)
    fake_graph.add_facebook_page("104000000000002", "No Instagram here", None)

    answer = await browser_round_trip(client, fake_graph, token, login="facebook")
    dm = payloads.dm_delivery(page_id=IG_ACCOUNT, sender=PATIENT, text="hi", timestamp=recent_ms())
    await post_delivery(client, dm)
    await runtime.worker.run_until_idle()

    assert answer.headers["location"] == "/?instagram=connected"
    status = await connection_of(client, token)
    assert (status["status"], status["login_kind"]) == ("active", "facebook")
    assert "104000000000001" in fake_graph.subscriptions
    [send] = fake_graph.sends
    assert send.account_id == "104000000000001"
    assert send.access_token.startswith("EAApage-")


async def test_facebook_login_with_several_pages_lets_the_doctor_choose(
    client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    _doctor_id, token = doctor
    fake_graph.add_facebook_page("104000000000001", "Downtown", IG_ACCOUNT)
    fake_graph.add_facebook_page("104000000000002", "Uptown", "17841400000000888")

    answer = await browser_round_trip(client, fake_graph, token, login="facebook")
    choice_id = answer.headers["location"].rsplit("/", 1)[-1]
    offered = await client.get(
        f"/api/v1/instagram/facebook-pages/{choice_id}", headers=bearer(token)
    )
    wrong = await client.post(
        f"/api/v1/instagram/facebook-pages/{choice_id}",
        json={"page_id": "999"},
        headers=bearer(token),
    )
    chosen = await client.post(
        f"/api/v1/instagram/facebook-pages/{choice_id}",
        json={"page_id": "104000000000002"},
        headers=bearer(token),
    )

    assert answer.status_code == 303
    assert {page["name"] for page in offered.json()["pages"]} == {"Downtown", "Uptown"}
    assert "EAA" not in offered.text, "page tokens never leave the server"
    assert wrong.status_code == 404
    assert chosen.json()["status"] == "active"
    assert "104000000000002" in fake_graph.subscriptions
    assert "104000000000001" not in fake_graph.subscriptions


async def test_token_rejected_then_reconnect_sends_the_held_reply_with_the_new_token(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    doctor_id, token = doctor
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    await browser_round_trip(client, fake_graph, token)
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        first_token = await load_access_token(connection, runtime.keyring, doctor_id=doctor_id)
    assert first_token is not None
    fake_graph.reject_token(first_token)
    dm = payloads.dm_delivery(page_id=IG_ACCOUNT, sender=PATIENT, text="hi", timestamp=recent_ms())
    await post_delivery(client, dm)
    await runtime.worker.run_until_idle()
    assert (await connection_of(client, token))["status"] == "needs_reauth"
    assert fake_graph.sends == []

    await browser_round_trip(client, fake_graph, token)
    await runtime.worker.run_until_idle()

    [send] = fake_graph.sends
    assert send.recipient_id == PATIENT
    assert send.access_token != first_token
    assert (await connection_of(client, token))["status"] == "active"


async def test_replay_unrouted_requeues_messages_sent_before_the_doctor_connected(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: tuple[str, str]
) -> None:
    doctor_id, token = doctor
    early = payloads.dm_delivery(
        page_id=IG_ACCOUNT, sender=PATIENT, text="hello?", timestamp=recent_ms()
    )
    await post_delivery(client, early)
    await runtime.worker.run_until_idle()
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    await browser_round_trip(client, fake_graph, token)

    replayed = await client.post(
        "/api/v1/instagram/connection/replay-unrouted", headers=bearer(token)
    )
    await runtime.worker.run_until_idle()

    assert replayed.json() == {"replayed_count": 1}
    async with unscoped(runtime) as connection:
        event = (
            await connection.execute(
                select(webhook_events).where(webhook_events.c.provider == "instagram")
            )
        ).one()
    assert (event.status, event.doctor_id) == ("processed", doctor_id)
    assert [send.recipient_id for send in fake_graph.sends] == [PATIENT]
