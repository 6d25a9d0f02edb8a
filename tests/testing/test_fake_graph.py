"""Specification of the fake Graph API (Send, OAuth and account endpoints), exercised over HTTP."""

import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from frontdesk.testing.fake_graph import FakeEndpoint, FakeGraphApi, RecordedSend

ACCOUNT_ID = "17841455512340001"
PATIENT_ID = "7321554890123456"
TOKEN = "IGAAtoken"
SEND_PATH = f"/v23.0/{ACCOUNT_ID}/messages"


@pytest.fixture
def fake() -> FakeGraphApi:
    return FakeGraphApi()


@pytest.fixture
async def client(fake: FakeGraphApi) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=fake.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://graph.test") as client:
        yield client


def _send_body(
    text: str = "Your appointment is confirmed.", recipient: str = PATIENT_ID
) -> dict[str, object]:
    return {"recipient": {"id": recipient}, "message": {"text": text}}


async def _send(
    client: httpx2.AsyncClient, *, text: str = "Your appointment is confirmed.", token: str = TOKEN
) -> httpx2.Response:
    return await client.post(
        SEND_PATH, json=_send_body(text), headers={"Authorization": f"Bearer {token}"}
    )


def _error(response: httpx2.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


async def test_send_is_answered_with_recipient_and_message_id_and_recorded(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    response = await _send(client, text="See you Thursday")

    assert response.status_code == 200
    assert response.json() == {"recipient_id": PATIENT_ID, "message_id": "fake_mid_1"}
    assert fake.sends == [
        RecordedSend(
            account_id=ACCOUNT_ID,
            version="v23.0",
            access_token=TOKEN,
            recipient_id=PATIENT_ID,
            text="See you Thursday",
            message_id="fake_mid_1",
            body=_send_body("See you Thursday"),
        )
    ]
    assert fake.attempts == 1


async def test_each_send_gets_a_new_increasing_message_id(client: httpx2.AsyncClient) -> None:
    ids = [(await _send(client)).json()["message_id"] for _ in range(3)]

    assert ids == ["fake_mid_1", "fake_mid_2", "fake_mid_3"]


async def test_send_with_token_in_query_string_is_rejected_and_not_recorded(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    response = await client.post(SEND_PATH, params={"access_token": TOKEN}, json=_send_body())

    assert response.status_code == 400
    assert _error(response)["code"] == 100
    assert _error(response)["type"] == "OAuthException"
    assert fake.sends == []


async def test_token_in_query_string_is_rejected_even_with_a_bearer_header(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    response = await client.post(
        SEND_PATH,
        params={"access_token": TOKEN},
        json=_send_body(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert response.status_code == 400
    assert fake.sends == []


async def test_send_without_bearer_token_is_rejected_with_code_190(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    response = await client.post(SEND_PATH, json=_send_body())

    assert response.status_code == 400
    assert _error(response)["code"] == 190
    assert fake.sends == []


async def test_send_with_non_bearer_authorization_is_rejected_with_code_190(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post(
        SEND_PATH, json=_send_body(), headers={"Authorization": f"Basic {TOKEN}"}
    )

    assert _error(response)["code"] == 190


async def test_send_with_rejected_token_fails_as_expired_session_190_463(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.reject_token(TOKEN)

    response = await _send(client)

    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert error["message"] == "Error validating access token: Session has expired"
    assert isinstance(error["fbtrace_id"], str)
    assert fake.sends == []


async def test_rejecting_one_token_leaves_other_tokens_working(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.reject_token("expired-token")

    response = await _send(client, token="fresh-token")

    assert response.status_code == 200


async def test_fail_next_returns_its_status_and_headers_then_the_next_send_succeeds(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(
        status=429,
        code=4,
        message="Application request limit reached",
        headers={"Retry-After": "7"},
    )

    failed = await _send(client)
    succeeded = await _send(client)

    assert failed.status_code == 429
    assert failed.headers["Retry-After"] == "7"
    assert _error(failed)["code"] == 4
    assert _error(failed)["message"] == "Application request limit reached"
    assert succeeded.status_code == 200
    assert len(fake.sends) == 1
    assert fake.attempts == 2


async def test_fail_next_defaults_to_a_retryable_500_with_code_2(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next()

    response = await _send(client)

    assert response.status_code == 500
    assert _error(response)["code"] == 2
    assert "error_subcode" not in _error(response)


async def test_fail_next_with_count_fails_that_many_sends(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(2)

    statuses = [(await _send(client)).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]


async def test_scripted_failures_are_consumed_first_in_first_out(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(status=503, code=2)
    fake.fail_next(status=400, code=10, error_subcode=2018278)

    first, second = await _send(client), await _send(client)

    assert (first.status_code, _error(first)["code"]) == (503, 2)
    assert (second.status_code, _error(second)["error_subcode"]) == (400, 2018278)


async def test_scripted_failure_does_not_consume_a_request_rejected_for_missing_auth(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next()

    await client.post(SEND_PATH, json=_send_body())
    response = await _send(client)

    assert response.status_code == 500


async def test_text_longer_than_1000_characters_is_rejected_with_code_100(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    response = await _send(client, text="x" * 1001)

    assert response.status_code == 400
    assert _error(response)["code"] == 100
    assert fake.sends == []


async def test_text_of_exactly_1000_characters_is_accepted(client: httpx2.AsyncClient) -> None:
    response = await _send(client, text="x" * 1000)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"message": {"text": "hi"}}',
        b'{"recipient": {"id": 7321554890123456}, "message": {"text": "hi"}}',
        b'{"recipient": {"id": "7321554890123456"}}',
        b'{"recipient": {"id": "7321554890123456"}, "message": {"attachment": {}}}',
    ],
)
async def test_send_without_string_recipient_id_and_message_text_is_rejected_with_code_100(
    client: httpx2.AsyncClient, fake: FakeGraphApi, body: bytes
) -> None:
    response = await client.post(
        SEND_PATH,
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert _error(response)["code"] == 100
    assert fake.sends == []


async def test_sends_to_returns_only_sends_addressed_to_that_recipient(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    for recipient in ["patient-a", "patient-b", "patient-a"]:
        await client.post(
            SEND_PATH,
            json=_send_body(recipient=recipient),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    assert [send.message_id for send in fake.sends_to("patient-a")] == ["fake_mid_1", "fake_mid_3"]


async def test_reset_forgets_sends_attempts_scripted_failures_and_rejected_tokens(
    client: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    await _send(client)
    fake.fail_next()
    fake.reject_token(TOKEN)

    fake.reset()
    response = await _send(client)

    assert response.json()["message_id"] == "fake_mid_1"
    assert fake.attempts == 1


def test_recorded_send_repr_hides_token_and_message_text() -> None:
    send = RecordedSend(
        account_id=ACCOUNT_ID,
        version="v23.0",
        access_token=TOKEN,
        recipient_id=PATIENT_ID,
        text="I have a rash",
        message_id="fake_mid_1",
        body=_send_body("I have a rash"),
    )

    assert TOKEN not in repr(send)
    assert "rash" not in repr(send)


async def test_serve_listens_on_loopback_and_answers_real_http(fake: FakeGraphApi) -> None:
    async with fake.serve() as base_url, httpx2.AsyncClient(base_url=base_url) as client:
        response = await _send(client)

    assert base_url.startswith("http://127.0.0.1:")
    assert response.status_code == 200
    assert [send.recipient_id for send in fake.sends] == [PATIENT_ID]


async def test_hang_next_makes_a_client_with_a_short_timeout_time_out(fake: FakeGraphApi) -> None:
    fake.hang_next(seconds=1.0)

    async with (
        fake.serve() as base_url,
        httpx2.AsyncClient(base_url=base_url, timeout=0.2) as client,
    ):
        with pytest.raises(httpx2.TimeoutException):
            await _send(client)

    assert fake.attempts == 1


async def test_leaving_serve_releases_a_hung_send_which_then_lands(fake: FakeGraphApi) -> None:
    fake.hang_next(seconds=30.0)
    started = time.monotonic()

    async with (
        fake.serve() as base_url,
        httpx2.AsyncClient(base_url=base_url, timeout=0.2) as client,
    ):
        with pytest.raises(httpx2.TimeoutException):
            await _send(client)

    assert time.monotonic() - started < 10.0
    assert len(fake.sends) == 1


async def test_hung_send_is_answered_normally_once_the_delay_is_over(fake: FakeGraphApi) -> None:
    fake.hang_next(seconds=0.3)

    async with fake.serve() as base_url, httpx2.AsyncClient(base_url=base_url) as client:
        response = await _send(client)

    assert response.status_code == 200
    assert len(fake.sends) == 1


# Connect Instagram: authorize pages, token endpoints, accounts and subscriptions

INSTAGRAM_USERNAME = "clinic.dr.weiss"
OTHER_ACCOUNT_ID = "17841455512340002"
PAGE_ID = "104000000000001"
REDIRECT_URI = "https://frontdesk.test/connect/callback"
STATE = "state-nonce-1"
IG_SECRET = "ig-app-secret"
FB_SECRET = "fb-app-secret"


@pytest.fixture
def connectable(fake: FakeGraphApi) -> FakeGraphApi:
    fake.add_instagram_account(ACCOUNT_ID, INSTAGRAM_USERNAME)
    fake.add_facebook_page(PAGE_ID, "Praxis Dr. Weiss", ACCOUNT_ID)
    return fake


def _authorize_params(**overrides: str | None) -> dict[str, str]:
    params = {
        "client_id": "ig-app-id",
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "instagram_business_basic,instagram_business_manage_messages",
        "state": STATE,
    } | overrides
    return {name: value for name, value in params.items() if value is not None}


def _location(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 302
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def _exchange_form(issued_code: str, **overrides: str | None) -> dict[str, str]:
    form = {
        "client_id": "ig-app-id",
        "client_secret": IG_SECRET,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT_URI,
        "code": issued_code,
    } | overrides
    return {name: value for name, value in form.items() if value is not None}


async def _instagram_short(client: httpx2.AsyncClient, fake: FakeGraphApi) -> str:
    response = await client.post("/oauth/access_token", data=_exchange_form(fake.issue_code()))
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


async def _instagram_long(client: httpx2.AsyncClient, fake: FakeGraphApi) -> str:
    short = await _instagram_short(client, fake)
    params = {"grant_type": "ig_exchange_token", "client_secret": IG_SECRET, "access_token": short}
    token = (await client.get("/access_token", params=params)).json()["access_token"]
    assert isinstance(token, str)
    return token


async def _facebook_user(client: httpx2.AsyncClient, fake: FakeGraphApi) -> str:
    params = {
        "client_id": "fb-app-id",
        "redirect_uri": REDIRECT_URI,
        "client_secret": FB_SECRET,
        "code": fake.issue_code(login="facebook"),
    }
    token = (await client.get("/v23.0/oauth/access_token", params=params)).json()["access_token"]
    assert isinstance(token, str)
    return token


async def _page_token(client: httpx2.AsyncClient, fake: FakeGraphApi) -> str:
    user = await _facebook_user(client, fake)
    response = await client.get("/v23.0/me/accounts", headers=_bearer(user))
    token = response.json()["data"][0]["access_token"]
    assert isinstance(token, str)
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_instagram_authorize_redirects_with_the_state_and_a_code_that_works_once(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    redirect = await client.get("/oauth/authorize", params=_authorize_params())
    query = _location(redirect)

    first = await client.post("/oauth/access_token", data=_exchange_form(query["code"]))
    second = await client.post("/oauth/access_token", data=_exchange_form(query["code"]))

    assert query["state"] == STATE
    assert redirect.headers["location"].startswith(f"{REDIRECT_URI}?")
    assert first.status_code == 200
    assert first.json() == {
        "access_token": first.json()["access_token"],
        "user_id": int(ACCOUNT_ID),
        "permissions": "instagram_business_basic,instagram_business_manage_messages",
    }
    assert first.json()["access_token"].startswith("IGshort-")
    assert second.status_code == 400
    assert second.json() == {
        "error_type": "OAuthException",
        "code": 400,
        "error_message": "This authorization code has been used",
    }


async def test_instagram_authorize_appends_hash_underscore_and_keeps_the_callbacks_query(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    redirect = await client.get(
        "/oauth/authorize", params=_authorize_params(redirect_uri=f"{REDIRECT_URI}?clinic=7")
    )

    location = redirect.headers["location"]
    assert location.endswith("#_")
    assert _location(redirect)["clinic"] == "7"


@pytest.mark.parametrize("path", ["/oauth/authorize", "/v23.0/dialog/oauth"])
@pytest.mark.parametrize("missing", ["client_id", "redirect_uri", "state"])
async def test_authorize_without_client_id_redirect_uri_or_state_is_refused(
    client: httpx2.AsyncClient, connectable: FakeGraphApi, path: str, missing: str
) -> None:
    response = await client.get(path, params=_authorize_params(**{missing: None}))

    assert response.status_code == 400
    assert "location" not in response.headers


async def test_instagram_authorize_without_any_account_is_refused(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/oauth/authorize", params=_authorize_params())

    assert response.status_code == 400
    assert "add_instagram_account" in response.json()["error_message"]


async def test_authorize_logs_in_as_the_chosen_account_once_then_the_latest_added(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    connectable.add_instagram_account(OTHER_ACCOUNT_ID, "second.clinic")
    connectable.next_authorization(ACCOUNT_ID)

    users = []
    for _ in range(2):
        code = _location(await client.get("/oauth/authorize", params=_authorize_params()))["code"]
        response = await client.post("/oauth/access_token", data=_exchange_form(code))
        users.append(response.json()["user_id"])

    assert users == [int(ACCOUNT_ID), int(OTHER_ACCOUNT_ID)]


def test_choosing_or_issuing_a_code_for_an_unknown_account_raises(fake: FakeGraphApi) -> None:
    with pytest.raises(LookupError):
        fake.issue_code()
    with pytest.raises(LookupError):
        fake.next_authorization(ACCOUNT_ID)
    with pytest.raises(LookupError):
        fake.issue_code(ACCOUNT_ID)


def test_a_facebook_code_takes_no_user_id(connectable: FakeGraphApi) -> None:
    with pytest.raises(ValueError, match="no user_id"):
        connectable.issue_code(ACCOUNT_ID, login="facebook")


def test_instagram_user_ids_must_be_numeric(fake: FakeGraphApi) -> None:
    with pytest.raises(ValueError, match="numeric"):
        fake.add_instagram_account("clinic", INSTAGRAM_USERNAME)


@pytest.mark.parametrize("path", ["/oauth/authorize", "/v23.0/dialog/oauth"])
async def test_a_declined_authorization_redirects_with_access_denied_only_once(
    client: httpx2.AsyncClient, connectable: FakeGraphApi, path: str
) -> None:
    connectable.decline_next_authorization()

    declined = _location(await client.get(path, params=_authorize_params()))
    accepted = _location(await client.get(path, params=_authorize_params()))

    assert declined == {
        "error": "access_denied",
        "error_reason": "user_denied",
        "error_description": "The user denied your request.",
        "state": STATE,
    }
    assert set(accepted) == {"code", "state"}


async def test_facebook_dialog_code_is_exchanged_for_a_user_token_then_a_long_lived_one(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    redirect = await client.get("/v23.0/dialog/oauth", params=_authorize_params())
    code = _location(redirect)["code"]
    exchange = {"client_id": "fb-app-id", "redirect_uri": REDIRECT_URI, "client_secret": FB_SECRET}

    user = await client.get("/v23.0/oauth/access_token", params={**exchange, "code": code})
    reused = await client.get("/v23.0/oauth/access_token", params={**exchange, "code": code})
    long_lived = await client.get(
        "/v23.0/oauth/access_token",
        params={
            "grant_type": "fb_exchange_token",
            "client_id": "fb-app-id",
            "client_secret": FB_SECRET,
            "fb_exchange_token": user.json()["access_token"],
        },
    )

    assert not redirect.headers["location"].endswith("#_")
    assert user.json()["access_token"].startswith("EAAuser-")
    assert user.json()["expires_in"] == 5183944
    assert reused.status_code == 400
    assert _error(reused)["code"] == 100
    assert long_lived.json()["access_token"].startswith("EAAuserlong-")
    assert long_lived.json()["token_type"] == "bearer"
    assert connectable.token_requests == ["oauth_token", "oauth_token", "long_lived_token"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_secret": "wrong-secret"},
        {"redirect_uri": "https://elsewhere.test/cb"},
        {"grant_type": "client_credentials"},
        {"client_id": None},
        {"code": "AQnever-issued"},
    ],
    ids=["wrong-secret", "other-redirect-uri", "wrong-grant-type", "no-client-id", "unknown-code"],
)
async def test_instagram_code_exchange_refuses_a_bad_form(
    client: httpx2.AsyncClient, connectable: FakeGraphApi, overrides: dict[str, str | None]
) -> None:
    code = _location(await client.get("/oauth/authorize", params=_authorize_params()))["code"]

    response = await client.post("/oauth/access_token", data=_exchange_form(code, **overrides))

    assert response.status_code == 400
    assert response.json()["error_type"] == "OAuthException"


async def test_instagram_code_exchange_wants_a_form_not_json(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    response = await client.post(
        "/oauth/access_token", json=_exchange_form(connectable.issue_code())
    )

    assert response.status_code == 400


async def test_a_code_of_one_login_is_not_accepted_by_the_other(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    facebook_code = connectable.issue_code(login="facebook")

    response = await client.post("/oauth/access_token", data=_exchange_form(facebook_code))

    assert response.status_code == 400


async def test_code_exchange_can_answer_in_the_newer_data_shape(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    connectable.code_exchange_shape = "data"

    response = await client.post(
        "/oauth/access_token", data=_exchange_form(connectable.issue_code())
    )

    (grant,) = response.json()["data"]
    assert grant["user_id"] == int(ACCOUNT_ID)
    assert grant["access_token"].startswith("IGshort-")


async def test_app_secrets_are_configurable(client: httpx2.AsyncClient) -> None:
    fake = FakeGraphApi(instagram_app_secret="custom-secret")
    fake.add_instagram_account(ACCOUNT_ID, INSTAGRAM_USERNAME)
    form = _exchange_form(fake.issue_code(), client_secret="custom-secret")
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=fake.app), base_url="http://graph.test"
    ) as custom:
        response = await custom.post("/oauth/access_token", data=form)

    assert response.status_code == 200


async def test_long_lived_exchange_needs_the_app_secret_and_a_short_lived_token(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    short = await _instagram_short(client, connectable)
    params = {"grant_type": "ig_exchange_token", "client_secret": IG_SECRET}

    long_lived = await client.get("/access_token", params={**params, "access_token": short})
    wrong_secret = await client.get(
        "/access_token", params={**params, "access_token": short, "client_secret": "nope"}
    )
    again = await client.get(
        "/access_token", params={**params, "access_token": long_lived.json()["access_token"]}
    )
    in_header = await client.get("/access_token", params=params, headers=_bearer(short))

    assert long_lived.json() == {
        "access_token": long_lived.json()["access_token"],
        "token_type": "bearer",
        "expires_in": 5183944,
    }
    assert long_lived.json()["access_token"].startswith("IGlong-")
    assert [r.status_code for r in (wrong_secret, again, in_header)] == [400, 400, 400]


async def test_refresh_issues_a_new_long_lived_token_and_the_old_one_stays_valid(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    old = await _instagram_long(client, connectable)

    refreshed = await client.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": old}
    )
    old_still_works = await client.get(
        "/v23.0/me", params={"fields": "user_id"}, headers=_bearer(old)
    )

    new = refreshed.json()["access_token"]
    assert new.startswith("IGlong-")
    assert new != old
    assert refreshed.json()["expires_in"] == 5183944
    assert old_still_works.json()["user_id"] == ACCOUNT_ID


async def test_refresh_refuses_a_short_lived_token(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    short = await _instagram_short(client, connectable)

    response = await client.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": short}
    )

    assert response.status_code == 400
    assert _error(response)["code"] == 100


async def test_me_answers_the_app_scoped_id_and_the_requested_fields(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)

    full = await client.get(
        "/v23.0/me", params={"fields": "user_id,username"}, headers=_bearer(token)
    )
    bare = await client.get("/v23.0/me", headers=_bearer(token))

    assert full.json() == {
        "id": full.json()["id"],
        "user_id": ACCOUNT_ID,
        "username": INSTAGRAM_USERNAME,
    }
    assert full.json()["id"] != ACCOUNT_ID
    assert bare.json() == {"id": full.json()["id"]}


@pytest.mark.parametrize(
    ("headers", "params", "code"),
    [
        ({}, {}, 190),
        (_bearer("IGnever-issued"), {}, 190),
        ({}, {"access_token": "IGnever-issued"}, 100),
    ],
    ids=["no-token", "unknown-token", "token-in-query"],
)
async def test_me_refuses_a_missing_unknown_or_query_string_token(
    client: httpx2.AsyncClient,
    connectable: FakeGraphApi,
    headers: dict[str, str],
    params: dict[str, str],
    code: int,
) -> None:
    response = await client.get("/v23.0/me", params=params, headers=headers)

    assert response.status_code == 400
    assert _error(response)["code"] == code


async def test_me_refuses_a_facebook_user_token(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    response = await client.get(
        "/v23.0/me", headers=_bearer(await _facebook_user(client, connectable))
    )

    assert response.status_code == 400
    assert _error(response)["code"] == 100


async def test_a_rejected_token_gets_190_463_from_every_oauth_endpoint(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    instagram = await _instagram_long(client, connectable)
    facebook = await _facebook_user(client, connectable)
    page = await _page_token(client, connectable)
    for token in (instagram, facebook, page):
        connectable.reject_token(token)

    responses = [
        await client.get("/v23.0/me", headers=_bearer(instagram)),
        await client.post(
            "/v23.0/me/subscribed_apps",
            params={"subscribed_fields": "messages"},
            headers=_bearer(instagram),
        ),
        await client.get(
            "/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": instagram},
        ),
        await client.get("/v23.0/me/accounts", headers=_bearer(facebook)),
        await client.delete(f"/v23.0/{PAGE_ID}/subscribed_apps", headers=_bearer(page)),
        await client.post(
            f"/v23.0/{ACCOUNT_ID}/messages", json=_send_body(), headers=_bearer(instagram)
        ),
    ]

    assert [(_error(r)["code"], _error(r)["error_subcode"]) for r in responses] == [(190, 463)] * 6


async def test_subscribed_apps_post_adds_and_delete_removes_the_account(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)
    params = {"subscribed_fields": "messages,message_reactions"}

    added = await client.post("/v23.0/me/subscribed_apps", params=params, headers=_bearer(token))
    subscribed = set(connectable.subscriptions)
    removed = await client.delete("/v23.0/me/subscribed_apps", headers=_bearer(token))

    assert added.json() == {"success": True}
    assert removed.json() == {"success": True}
    assert subscribed == {ACCOUNT_ID}
    assert connectable.subscriptions == set()


@pytest.mark.parametrize("account", ["me", PAGE_ID])
async def test_a_page_token_subscribes_its_page(
    client: httpx2.AsyncClient, connectable: FakeGraphApi, account: str
) -> None:
    token = await _page_token(client, connectable)

    response = await client.post(
        f"/v23.0/{account}/subscribed_apps",
        params={"subscribed_fields": "messages"},
        headers=_bearer(token),
    )

    assert response.json() == {"success": True}
    assert connectable.subscriptions == {PAGE_ID}


async def test_subscribing_another_account_or_without_fields_is_refused(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)

    other = await client.post(
        f"/v23.0/{PAGE_ID}/subscribed_apps",
        params={"subscribed_fields": "messages"},
        headers=_bearer(token),
    )
    no_fields = await client.post("/v23.0/me/subscribed_apps", headers=_bearer(token))

    assert [_error(r)["code"] for r in (other, no_fields)] == [100, 100]
    assert connectable.subscriptions == set()


async def test_me_accounts_lists_every_page_with_a_fresh_page_token(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    connectable.add_facebook_page("104000000000002", "Unlinked page", None)
    user = await _facebook_user(client, connectable)
    fields = {"fields": "id,name,access_token,instagram_business_account"}

    response = await client.get("/v23.0/me/accounts", params=fields, headers=_bearer(user))
    without_fields = await client.get("/v23.0/me/accounts", headers=_bearer(user))

    linked, unlinked = response.json()["data"]
    assert linked == {
        "id": PAGE_ID,
        "name": "Praxis Dr. Weiss",
        "access_token": linked["access_token"],
        "instagram_business_account": {"id": ACCOUNT_ID},
    }
    assert linked["access_token"].startswith(f"EAApage-{PAGE_ID}-")
    assert set(unlinked) == {"id", "name", "access_token"}
    assert "next" not in response.json()["paging"]
    assert "instagram_business_account" not in without_fields.json()["data"][0]
    assert without_fields.json()["data"][0]["access_token"] != linked["access_token"]


async def test_me_accounts_pages_25_at_a_time_by_cursor(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    for number in range(2, 31):
        connectable.add_facebook_page(f"1040000000000{number:02d}", f"Page {number}", None)
    user = await _facebook_user(client, connectable)

    first = (await client.get("/v23.0/me/accounts", headers=_bearer(user))).json()
    after = first["paging"]["cursors"]["after"]
    second = (
        await client.get("/v23.0/me/accounts", params={"after": after}, headers=_bearer(user))
    ).json()
    following_next = await client.get(first["paging"]["next"])

    assert len(first["data"]) == 25
    assert len(second["data"]) == 5
    assert "next" not in second["paging"]
    assert {page["id"] for page in first["data"] + second["data"]} == {
        PAGE_ID,
        *(f"1040000000000{number:02d}" for number in range(2, 31)),
    }
    assert user in first["paging"]["next"], "like Meta's, the next URL carries the token"
    assert following_next.status_code == 400, "and the fake refuses a token in the URL"


async def test_me_accounts_refuses_an_instagram_token(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)

    response = await client.get("/v23.0/me/accounts", headers=_bearer(token))

    assert _error(response)["code"] == 100


async def test_long_lived_and_page_tokens_are_accepted_by_the_send_endpoint(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    instagram = await _instagram_long(client, connectable)
    page = await _page_token(client, connectable)

    responses = [await _send(client, token=token) for token in (instagram, page)]

    assert [r.status_code for r in responses] == [200, 200]
    assert [send.access_token for send in connectable.sends] == [instagram, page]


async def test_scripted_failures_are_queued_per_endpoint(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)
    connectable.fail_next(status=503, code=2, endpoint="me")
    connectable.fail_next(status=400, code=190, endpoint="me")
    connectable.fail_next(status=429, code=4)

    first_me = await client.get("/v23.0/me", headers=_bearer(token))
    send = await _send(client, token=token)
    second_me = await client.get("/v23.0/me", headers=_bearer(token))
    third_me = await client.get("/v23.0/me", headers=_bearer(token))

    assert (first_me.status_code, _error(first_me)["code"]) == (503, 2)
    assert (send.status_code, _error(send)["code"]) == (429, 4)
    assert (second_me.status_code, _error(second_me)["code"]) == (400, 190)
    assert third_me.status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "method", "path"),
    [
        ("oauth_token", "POST", "/oauth/access_token"),
        ("oauth_token", "GET", "/v23.0/oauth/access_token"),
        ("long_lived_token", "GET", "/access_token"),
        ("long_lived_token", "GET", "/v23.0/oauth/access_token?grant_type=fb_exchange_token"),
        ("refresh", "GET", "/refresh_access_token"),
        ("me", "GET", "/v23.0/me"),
        ("subscribe", "POST", "/v23.0/me/subscribed_apps"),
        ("subscribe", "DELETE", f"/v23.0/{PAGE_ID}/subscribed_apps"),
        ("accounts", "GET", "/v23.0/me/accounts"),
    ],
)
async def test_each_oauth_endpoint_plays_its_own_script_and_is_named_in_token_requests(
    client: httpx2.AsyncClient,
    fake: FakeGraphApi,
    endpoint: FakeEndpoint,
    method: str,
    path: str,
) -> None:
    fake.fail_next(status=500, code=1200, endpoint=endpoint)

    response = await client.request(method, path)

    assert (response.status_code, _error(response)["code"]) == (500, 1200)
    assert fake.token_requests == [endpoint]
    assert fake.attempts == 0


def test_fail_next_and_hang_next_refuse_an_unknown_endpoint(fake: FakeGraphApi) -> None:
    with pytest.raises(ValueError, match="Unknown fake endpoint"):
        fake.fail_next(endpoint="send")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown fake endpoint"):
        fake.hang_next(endpoint="send")  # type: ignore[arg-type]


async def test_hang_next_delays_an_oauth_endpoint(
    fake: FakeGraphApi, connectable: FakeGraphApi
) -> None:
    fake.hang_next(seconds=5.0, endpoint="oauth_token")

    async with (
        fake.serve() as base_url,
        httpx2.AsyncClient(base_url=base_url, timeout=0.2) as client,
    ):
        with pytest.raises(httpx2.TimeoutException):
            await client.post("/oauth/access_token", data=_exchange_form(fake.issue_code()))

    assert fake.token_requests == ["oauth_token"]


async def test_reset_forgets_token_requests_subscriptions_and_scripts_but_keeps_accounts(
    client: httpx2.AsyncClient, connectable: FakeGraphApi
) -> None:
    token = await _instagram_long(client, connectable)
    await client.post(
        "/v23.0/me/subscribed_apps",
        params={"subscribed_fields": "messages"},
        headers=_bearer(token),
    )
    connectable.fail_next(endpoint="me")

    connectable.reset()
    response = await client.get("/v23.0/me", params={"fields": "user_id"}, headers=_bearer(token))

    assert response.json()["user_id"] == ACCOUNT_ID
    assert connectable.subscriptions == set()
    assert connectable.token_requests == ["me"]
