"""Signing in and out, invites, API tokens, CSRF and cookie flags, through HTTP."""

from __future__ import annotations

import httpx2
import pytest

from frontdesk.auth.accounts import create_account, create_invite
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.runtime import Runtime
from tests.conftest import PASSWORD, add_linked_doctor, bearer, give_account

PAGE = "17841455512340001"


@pytest.fixture
async def doctor_token(runtime: Runtime) -> str:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="t")
    return await give_account(runtime, doctor)


async def sign_in(client: httpx2.AsyncClient, password: str = PASSWORD) -> httpx2.Response:
    return await client.post(
        "/api/v1/auth/sign-in", json={"email": f"{PAGE}@clinic.test", "password": password}
    )


async def test_sign_in_sets_an_httponly_samesite_lax_session_cookie(
    client: httpx2.AsyncClient, doctor_token: str
) -> None:
    response = await sign_in(client)

    assert response.status_code == 200
    assert response.json()["account"]["role"] == "doctor"
    cookie = response.headers["set-cookie"].lower()
    assert "frontdesk_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie, "plain http on loopback; https sets Secure"
    me = await client.get("/api/v1/me")
    assert me.status_code == 200


async def test_wrong_password_is_401_and_repeated_failures_are_slowed_down(
    client: httpx2.AsyncClient, doctor_token: str, clock: FixedClock
) -> None:
    answers = [(await sign_in(client, "wrong password")).status_code for _ in range(6)]

    assert answers[:5] == [401] * 5
    assert answers[5] == 429
    throttled = await sign_in(client)
    assert throttled.status_code == 429, "even the right password waits"
    assert int(throttled.headers["retry-after"]) >= 1
    clock.advance(minutes=15)
    assert (await sign_in(client)).status_code == 200


async def test_unknown_email_is_the_same_401(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/sign-in", json={"email": "nobody@clinic.test", "password": "whatever1234"}
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


async def test_unsafe_request_with_a_session_but_without_csrf_header_is_403(
    client: httpx2.AsyncClient, doctor_token: str
) -> None:
    csrf = (await sign_in(client)).json()["csrf_token"]
    rules = (await client.get("/api/v1/settings/replies")).json()

    refused = await client.put("/api/v1/settings/replies", json=rules)
    accepted = await client.put(
        "/api/v1/settings/replies", json=rules, headers={"X-CSRF-Token": csrf}
    )

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert accepted.status_code == 200


async def test_sign_out_ends_the_session(client: httpx2.AsyncClient, doctor_token: str) -> None:
    csrf = (await sign_in(client)).json()["csrf_token"]
    cookie = client.cookies.get("frontdesk_session")

    await client.post("/api/v1/auth/sign-out", headers={"X-CSRF-Token": csrf})
    client.cookies.set("frontdesk_session", cookie or "")

    assert (await client.get("/api/v1/me")).status_code == 401


async def test_invite_is_single_use_and_expires_after_72_hours(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    async with transaction(runtime.engine) as connection:
        account = await create_account(
            connection, email="ops@clinic.test", role="operator", now=clock.now()
        )
        token = await create_invite(connection, account.id, now=clock.now())
        stale = await create_invite(connection, account.id, now=clock.now())
    body = {"token": token, "password": "a long enough password"}

    accepted = await client.post("/api/v1/auth/invites/accept", json=body)
    reused = await client.post("/api/v1/auth/invites/accept", json=body)
    clock.advance(hours=72)
    expired = await client.post("/api/v1/auth/invites/accept", json={**body, "token": stale})

    assert accepted.status_code == 200
    assert accepted.json()["account"]["role"] == "operator"
    assert (reused.status_code, expired.status_code) == (400, 400)
    assert reused.json()["error"]["code"] == "invite_invalid"


async def test_weak_password_on_invite_is_refused_clearly(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    async with transaction(runtime.engine) as connection:
        account = await create_account(
            connection, email="ops@clinic.test", role="operator", now=clock.now()
        )
        token = await create_invite(connection, account.id, now=clock.now())

    response = await client.post(
        "/api/v1/auth/invites/accept", json={"token": token, "password": "short"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "weak_password"


async def test_api_tokens_are_shown_once_listed_without_secret_and_revocable(
    client: httpx2.AsyncClient, doctor_token: str
) -> None:
    created = await client.post(
        "/api/v1/tokens", json={"name": "crm"}, headers=bearer(doctor_token)
    )
    new_token = created.json()["token"]
    listed = await client.get("/api/v1/tokens", headers=bearer(new_token))
    token_id = created.json()["id"]

    revoked = await client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(doctor_token))
    after = await client.get("/api/v1/me", headers=bearer(new_token))
    again = await client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(doctor_token))

    assert created.status_code == 201
    assert new_token.startswith("fdt_")
    assert new_token not in listed.text
    assert {item["name"] for item in listed.json()} == {"tests", "crm"}
    assert revoked.status_code == 204
    assert after.status_code == 401
    assert again.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer fdt_nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "x"},
    ],
    ids=["none", "unknown-token", "basic", "garbage"],
)
async def test_requests_without_valid_credentials_are_401_in_the_error_shape(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/me", headers=headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert error["correlation_id"] == response.headers["x-correlation-id"]


async def test_an_operator_session_cannot_call_doctor_endpoints(
    runtime: Runtime, client: httpx2.AsyncClient, clock: FixedClock
) -> None:
    async with transaction(runtime.engine) as connection:
        await create_account(
            connection, email="ops@clinic.test", role="operator", password=PASSWORD, now=clock.now()
        )
    await client.post(
        "/api/v1/auth/sign-in", json={"email": "ops@clinic.test", "password": PASSWORD}
    )

    response = await client.get("/api/v1/me")

    assert response.status_code == 403
