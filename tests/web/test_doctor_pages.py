"""The doctor's pages through HTTP: sign-in, invites, CSRF, home states, inbox, replies, rules."""

from __future__ import annotations

import re

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.auth.accounts import create_account, create_invite
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.db.tables import conversations
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import (
    PASSWORD,
    LinkedDoctor,
    add_linked_doctor,
    give_account,
    post_delivery,
    recent_ms,
    unscoped,
)

PAGE = "17841455512340001"
PATIENT = "7321554890123456"


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in the page"
    return match.group(1)


async def sign_in(
    client: httpx2.AsyncClient, email: str, password: str = PASSWORD
) -> httpx2.Response:
    form = await client.get("/sign-in")
    return await client.post(
        "/sign-in",
        data={
            "email": email,
            "password": password,
            "form_token": hidden(form.text, "form_token"),
            "next": "/",
        },
    )


@pytest.fixture
async def doctor(runtime: Runtime, client: httpx2.AsyncClient) -> LinkedDoctor:
    linked = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    await give_account(runtime, linked)
    answer = await sign_in(client, linked.email)
    assert answer.status_code == 303
    return linked


async def test_anonymous_visitors_are_sent_to_sign_in_and_htmx_is_told_to_redirect(
    client: httpx2.AsyncClient,
) -> None:
    page = await client.get("/inbox")
    fragment = await client.get("/inbox/list", headers={"HX-Request": "true"})

    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/inbox"
    assert fragment.headers["hx-redirect"].startswith("/sign-in")


async def test_a_wrong_password_shows_the_form_again_with_a_message(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    linked = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="t")
    await give_account(runtime, linked)

    answer = await sign_in(client, linked.email, "not the password")

    assert answer.status_code == 401
    assert "email or password is wrong" in answer.text
    assert "frontdesk_session" not in answer.headers.get("set-cookie", "")


async def test_sign_in_without_its_form_token_is_refused(client: httpx2.AsyncClient) -> None:
    answer = await client.post("/sign-in", data={"email": "a@b.c", "password": "x"})

    assert answer.status_code == 403
    assert "expired" in answer.text


async def test_sign_in_never_redirects_to_another_site(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    linked = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="t")
    await give_account(runtime, linked)
    form = await client.get("/sign-in?next=//evil.example/")

    answer = await client.post(
        "/sign-in",
        data={
            "email": linked.email,
            "password": PASSWORD,
            "form_token": hidden(form.text, "form_token"),
            "next": "//evil.example/",
        },
    )

    assert answer.headers["location"] == "/"


async def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    client: httpx2.AsyncClient, doctor: LinkedDoctor
) -> None:
    refused = await client.post(
        "/settings", data={"greeting_text": "hacked", "cooldown_hours": "1"}
    )
    page = await client.get("/settings")

    assert refused.status_code == 403
    assert "hacked" not in page.text


async def test_a_form_posted_from_another_origin_is_refused(
    client: httpx2.AsyncClient, doctor: LinkedDoctor
) -> None:
    csrf = hidden((await client.get("/settings")).text, "csrf_token")

    refused = await client.post(
        "/settings",
        data={"csrf_token": csrf, "greeting_text": "x", "cooldown_hours": "1"},
        headers={"Origin": "https://evil.example"},
    )

    assert refused.status_code == 403


async def test_home_shows_the_connection_and_offers_disconnect_behind_a_confirmation(
    client: httpx2.AsyncClient, doctor: LinkedDoctor
) -> None:
    home = await client.get("/")

    assert home.status_code == 200
    assert "Connected" in home.text
    assert "<details>" in home.text
    assert "Yes, disconnect" in home.text


async def test_a_dm_shows_in_the_inbox_and_its_conversation_and_a_reply_is_queued(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi, doctor: LinkedDoctor
) -> None:
    item = payloads.message_item(
        sender=PATIENT, recipient=PAGE, mid="m1", text="<b>Hello</b> doctor", timestamp=recent_ms()
    )
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE, messaging=[item])))
    await runtime.worker.run_until_idle()

    inbox = await client.get("/inbox/list")
    conversation_url = re.search(r'href="(/inbox/[^"]+)"', inbox.text)
    assert conversation_url
    page = await client.get(conversation_url.group(1))
    sent = await client.post(
        f"{conversation_url.group(1)}/reply",
        data={"csrf_token": hidden(page.text, "csrf_token"), "text": "See you"},
    )
    await runtime.worker.run_until_idle()

    assert "1 new" in inbox.text
    assert "&lt;b&gt;Hello&lt;/b&gt; doctor" in page.text, "patient text is escaped"
    assert sent.status_code == 303
    assert [send.text for send in fake_graph.sends][-1] == "See you"


async def test_the_reply_box_says_when_the_24_hour_window_has_closed(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock, doctor: LinkedDoctor
) -> None:
    item = payloads.message_item(
        sender=PATIENT, recipient=PAGE, mid="m1", text="hi", timestamp=recent_ms()
    )
    await post_delivery(client, payloads.delivery(payloads.entry(PAGE, messaging=[item])))
    await runtime.worker.run_until_idle()
    clock.advance(hours=25)

    inbox = await client.get("/inbox/list")
    url = re.search(r'href="(/inbox/[^"]+)"', inbox.text)
    assert url
    page = await client.get(url.group(1))

    assert "window to reply has closed" in page.text
    assert 'name="text"' not in page.text


async def test_settings_are_saved_and_bad_values_are_explained(
    client: httpx2.AsyncClient, doctor: LinkedDoctor
) -> None:
    csrf = hidden((await client.get("/settings")).text, "csrf_token")
    form = {
        "csrf_token": csrf,
        "enabled": "on",
        "greeting_text": "Welcome to the clinic",
        "cooldown_hours": "6",
        "emergency_words": "urgent, dolor",
        "emergency_text": "Call 112",
    }

    saved = await client.post("/settings", data=form)
    page = await client.get("/settings")
    bad = await client.post("/settings", data={**form, "cooldown_hours": "lots"})

    assert saved.status_code == 303
    assert "Welcome to the clinic" in page.text
    assert 'value="urgent, dolor"' in page.text
    assert bad.status_code == 400
    assert "cooldown" in bad.text


async def test_an_invite_sets_the_password_and_signs_in(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    async with transaction(runtime.engine) as connection:
        account = await create_account(
            connection, email="new@clinic.test", role="operator", now=runtime.clock.now()
        )
        token = await create_invite(connection, account.id, now=runtime.clock.now())
    form = await client.get(f"/invite/{token}")
    fields = {"form_token": hidden(form.text, "form_token"), "password": "a strong password"}

    mismatch = await client.post(
        f"/invite/{token}", data={**fields, "password_again": "other one!"}
    )
    form = await client.get(f"/invite/{token}")
    fields["form_token"] = hidden(form.text, "form_token")
    accepted = await client.post(
        f"/invite/{token}", data={**fields, "password_again": "a strong password"}
    )

    assert mismatch.status_code == 400
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/ops"


async def test_another_doctors_conversation_is_a_404_page(
    runtime: Runtime, client: httpx2.AsyncClient, doctor: LinkedDoctor
) -> None:
    other = await add_linked_doctor(runtime, name="Dr B", page_id="17841466698760002", token="b")
    item = payloads.message_item(
        sender=PATIENT,
        recipient=other.page_id,
        mid="mb",
        text="private to B",
        timestamp=recent_ms(),
    )
    await post_delivery(client, payloads.delivery(payloads.entry(other.page_id, messaging=[item])))
    await runtime.worker.run_until_idle()
    async with unscoped(runtime) as connection:
        conversation_id = (await connection.execute(select(conversations.c.id))).scalar_one()

    page = await client.get(f"/inbox/{conversation_id}")
    fragment = await client.get(f"/inbox/{conversation_id}/messages")

    assert (page.status_code, fragment.status_code) == (404, 404)
    assert "private to B" not in page.text + fragment.text
