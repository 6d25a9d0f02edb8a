"""Specification of the Send API client, exercised against the fake Graph API."""

from collections.abc import AsyncIterator

import httpx2
import pytest

from frontdesk.graph.client import FACEBOOK_LOGIN, INSTAGRAM_LOGIN, GraphClient, SendTarget
from frontdesk.graph.errors import GraphPermanentError, GraphTransientError, TokenRejectedError
from frontdesk.testing.fake_graph import FakeGraphApi

INSTAGRAM_BASE = "http://graph.instagram.test"
FACEBOOK_BASE = "http://graph.facebook.test"
VERSION = "v23.0"
ACCOUNT_ID = "17841455512340001"
FACEBOOK_PAGE_ID = "104000000000001"
PATIENT_ID = "7321554890123456"
TOKEN = "IGAAsecret-doctor-token"
TEXT = "Maria, your appointment is on Thursday"
TARGET = SendTarget(INSTAGRAM_LOGIN, ACCOUNT_ID)


@pytest.fixture
def fake() -> FakeGraphApi:
    return FakeGraphApi()


@pytest.fixture
async def http(fake: FakeGraphApi) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app)) as client:
        yield client


def _graph(http: httpx2.AsyncClient, base_url: str = INSTAGRAM_BASE) -> GraphClient:
    return GraphClient(
        http, instagram_base_url=base_url, facebook_base_url=FACEBOOK_BASE, version=VERSION
    )


async def _send(graph: GraphClient, target: SendTarget = TARGET) -> str:
    return await graph.send_text(target, recipient_id=PATIENT_ID, text=TEXT, access_token=TOKEN)


def _assert_data_free(error: BaseException) -> None:
    assert TOKEN not in str(error)
    assert TEXT not in str(error)
    assert "Maria" not in str(error)
    assert TOKEN not in repr(error)


async def test_send_returns_metas_message_id(http: httpx2.AsyncClient, fake: FakeGraphApi) -> None:
    message_id = await _send(_graph(http))

    assert message_id == "fake_mid_1"
    (sent,) = fake.sends
    assert sent.recipient_id == PATIENT_ID
    assert sent.text == TEXT
    assert sent.body == {"recipient": {"id": PATIENT_ID}, "message": {"text": TEXT}}


async def test_token_goes_in_the_authorization_header(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    seen: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        seen.append(request)

    http.event_hooks["request"].append(record)

    await _send(_graph(http))

    # The fake refuses tokens in the query string, so a recorded send proves the header was used.
    assert fake.sends[0].access_token == TOKEN
    (request,) = seen
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.url)
    assert TOKEN.encode() not in request.content


async def test_request_goes_to_version_account_messages(http: httpx2.AsyncClient) -> None:
    seen: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        seen.append(request)

    http.event_hooks["request"].append(record)

    await _send(_graph(http))

    (request,) = seen
    assert request.method == "POST"
    assert request.url.host == "graph.instagram.test"
    assert request.url.path == f"/{VERSION}/{ACCOUNT_ID}/messages"
    assert not request.url.query


async def test_fake_sees_the_version_and_account_from_the_path(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    await _send(_graph(http))

    assert fake.sends[0].version == VERSION
    assert fake.sends[0].account_id == ACCOUNT_ID


async def test_facebook_login_sends_through_the_facebook_host_as_the_page(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    seen: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        seen.append(request)

    http.event_hooks["request"].append(record)

    await _send(_graph(http), SendTarget(FACEBOOK_LOGIN, FACEBOOK_PAGE_ID))

    assert seen[0].url.host == "graph.facebook.test"
    assert fake.sends[0].account_id == FACEBOOK_PAGE_ID


async def test_base_url_with_a_trailing_slash_gives_the_same_path(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    await _send(_graph(http, base_url=f"{INSTAGRAM_BASE}/"))

    assert fake.sends[0].account_id == ACCOUNT_ID
    assert fake.sends[0].version == VERSION


async def test_server_error_raises_a_transient_error(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(status=500, code=2)

    with pytest.raises(GraphTransientError) as raised:
        await _send(_graph(http))

    assert raised.value.reason == "graph_unavailable:2"
    assert fake.sends == []
    _assert_data_free(raised.value)


async def test_rate_limit_with_retry_after_raises_a_transient_error_carrying_it(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(status=429, code=4, headers={"Retry-After": "7"})

    with pytest.raises(GraphTransientError) as raised:
        await _send(_graph(http))

    assert raised.value.retry_after == 7.0
    _assert_data_free(raised.value)


async def test_rejected_token_raises_token_rejected(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.reject_token(TOKEN)

    with pytest.raises(TokenRejectedError) as raised:
        await _send(_graph(http))

    assert raised.value.code == 190
    _assert_data_free(raised.value)


async def test_outside_the_window_raises_a_permanent_error(
    http: httpx2.AsyncClient, fake: FakeGraphApi
) -> None:
    fake.fail_next(status=400, code=10, error_subcode=2018278, message="outside window for Maria")

    with pytest.raises(GraphPermanentError) as raised:
        await _send(_graph(http))

    assert raised.value.reason == "outside_messaging_window"
    _assert_data_free(raised.value)


async def test_text_longer_than_meta_accepts_raises_a_permanent_error(
    http: httpx2.AsyncClient,
) -> None:
    graph = _graph(http)

    with pytest.raises(GraphPermanentError) as raised:
        await graph.send_text(TARGET, recipient_id=PATIENT_ID, text="x" * 1001, access_token=TOKEN)

    assert raised.value.reason == "graph_rejected:100"


async def test_success_without_a_message_id_is_transient() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"recipient_id": PATIENT_ID})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        with pytest.raises(GraphTransientError) as raised:
            await _send(_graph(http))

    assert raised.value.reason == "graph_malformed_response"


async def test_error_reply_that_is_not_json_is_classified_by_status() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(502, text="<html>Bad Gateway</html>")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        with pytest.raises(GraphTransientError) as raised:
            await _send(_graph(http))

    assert raised.value.reason == "graph_unavailable:502"


async def test_hang_longer_than_the_client_timeout_raises_graph_timeout(fake: FakeGraphApi) -> None:
    fake.hang_next(seconds=1.0)

    async with fake.serve() as base_url, httpx2.AsyncClient(timeout=0.2) as http:
        with pytest.raises(GraphTransientError) as raised:
            await _send(_graph(http, base_url=base_url))

    assert raised.value.reason == "graph_timeout"
    assert str(raised.value) == "graph_timeout"
    _assert_data_free(raised.value)


async def test_after_a_timeout_the_next_send_over_real_http_succeeds(fake: FakeGraphApi) -> None:
    fake.hang_next(seconds=1.0)

    async with fake.serve() as base_url, httpx2.AsyncClient(timeout=0.2) as http:
        graph = _graph(http, base_url=base_url)
        with pytest.raises(GraphTransientError):
            await _send(graph)
        assert (await _send(graph)).startswith("fake_mid_")


async def test_unreachable_host_raises_graph_unreachable() -> None:
    async with httpx2.AsyncClient(timeout=2.0) as http:
        with pytest.raises(GraphTransientError) as raised:
            await _send(_graph(http, base_url="http://127.0.0.1:1"))

    assert raised.value.reason == "graph_unreachable"
    _assert_data_free(raised.value)
