"""Specification of the fake Graph API Send endpoint, exercised over HTTP."""

import time
from collections.abc import AsyncIterator

import httpx2
import pytest

from frontdesk.testing.fake_graph import FakeGraphApi, RecordedSend

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
