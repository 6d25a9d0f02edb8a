"""Specification of the Connect Instagram OAuth client, exercised against the fake Graph API."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from frontdesk.clock import FixedClock
from frontdesk.graph.oauth import (
    MAX_PAGE_REQUESTS,
    AccessToken,
    FacebookPage,
    InstagramAccount,
    MetaOAuthClient,
    MetaOAuthSettings,
    OAuthStepError,
)
from frontdesk.testing.fake_graph import FakeEndpoint, FakeGraphApi

BASE = "http://meta.test"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
IG_USER_ID = "17841455512340001"
IG_USERNAME = "clinic.dr.weiss"
PAGE_ID = "104000000000001"
PAGE_NAME = "Praxis Dr. Weiss"
REDIRECT_URI = "https://frontdesk.test/connect/instagram/callback"
STATE = "state-nonce-5f2c9a17"
LONG_LIVED = timedelta(seconds=5183944)
SETTINGS = MetaOAuthSettings(
    instagram_app_id="ig-app-id",
    instagram_app_secret="ig-app-secret",
    facebook_app_id="fb-app-id",
    facebook_app_secret="fb-app-secret",
    instagram_authorize_url=f"{BASE}/oauth/authorize",
    instagram_oauth_url=BASE,
    graph_api_url=BASE,
    facebook_authorize_url=BASE,
    facebook_graph_api_url=BASE,
    version="v23.0",
)
INSTAGRAM_FIELDS = "messages,message_reactions,messaging_seen,messaging_postbacks,message_edit"
PAGE_FIELDS = "messages,messaging_postbacks,messaging_seen,message_reactions"


@dataclass(frozen=True)
class Credentials:
    """Everything secret a step may be handed; none of it may show in an error."""

    instagram_code: str
    facebook_code: str
    instagram_short: str
    instagram_long: str
    facebook_user: str
    page: FacebookPage

    def values(self) -> list[str]:
        return [
            self.instagram_code,
            self.facebook_code,
            self.instagram_short,
            self.instagram_long,
            self.facebook_user,
            self.page.access_token,
            SETTINGS.instagram_app_secret,
            SETTINGS.facebook_app_secret,
            STATE,
        ]


DUMMY_CREDENTIALS = Credentials(
    instagram_code="AQdummy-instagram-code",
    facebook_code="AQdummy-facebook-code",
    instagram_short="IGshort-dummy",
    instagram_long="IGlong-dummy",
    facebook_user="EAAuser-dummy",
    page=FacebookPage(PAGE_ID, PAGE_NAME, "EAApage-dummy", IG_USER_ID),
)

Step = Callable[[MetaOAuthClient, Credentials], Awaitable[object]]


def _case(endpoint: FakeEndpoint, step: str, call: Step, name: str) -> object:
    return pytest.param(endpoint, step, call, id=name)


STEPS = [
    _case(
        "oauth_token",
        "code_exchange",
        lambda o, c: o.exchange_instagram_code(code=c.instagram_code, redirect_uri=REDIRECT_URI),
        "instagram-code",
    ),
    _case(
        "oauth_token",
        "code_exchange",
        lambda o, c: o.exchange_facebook_code(code=c.facebook_code, redirect_uri=REDIRECT_URI),
        "facebook-code",
    ),
    _case(
        "long_lived_token",
        "long_lived_token",
        lambda o, c: o.instagram_long_lived_token(c.instagram_short),
        "instagram-long-lived",
    ),
    _case(
        "long_lived_token",
        "long_lived_token",
        lambda o, c: o.facebook_long_lived_user_token(c.facebook_user),
        "facebook-long-lived",
    ),
    _case(
        "refresh", "refresh", lambda o, c: o.refresh_instagram_token(c.instagram_long), "refresh"
    ),
    _case("me", "account", lambda o, c: o.instagram_account(c.instagram_long), "account"),
    _case(
        "subscribe",
        "subscribe",
        lambda o, c: o.subscribe_instagram_account(c.instagram_long),
        "subscribe-instagram",
    ),
    _case(
        "subscribe",
        "subscribe",
        lambda o, c: o.subscribe_facebook_page(c.page.page_id, c.page.access_token),
        "subscribe-page",
    ),
    _case(
        "subscribe",
        "unsubscribe",
        lambda o, c: o.unsubscribe_instagram_account(c.instagram_long),
        "unsubscribe-instagram",
    ),
    _case(
        "subscribe",
        "unsubscribe",
        lambda o, c: o.unsubscribe_facebook_page(c.page.page_id, c.page.access_token),
        "unsubscribe-page",
    ),
    _case("accounts", "pages", lambda o, c: o.facebook_pages(c.facebook_user), "pages"),
]


@pytest.fixture
def fake() -> FakeGraphApi:
    fake = FakeGraphApi()
    fake.add_instagram_account(IG_USER_ID, IG_USERNAME)
    fake.add_facebook_page(PAGE_ID, PAGE_NAME, IG_USER_ID)
    return fake


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
async def http(fake: FakeGraphApi) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app)) as client:
        yield client


@pytest.fixture
def oauth(http: httpx2.AsyncClient, clock: FixedClock) -> MetaOAuthClient:
    return MetaOAuthClient(http, SETTINGS, clock)


@pytest.fixture
async def credentials(fake: FakeGraphApi, oauth: MetaOAuthClient) -> Credentials:
    """Real credentials from both flows, and a fresh unused code of each login."""
    short = await oauth.exchange_instagram_code(code=fake.issue_code(), redirect_uri=REDIRECT_URI)
    long_lived = await oauth.instagram_long_lived_token(short.access_token)
    user = await oauth.exchange_facebook_code(
        code=fake.issue_code(login="facebook"), redirect_uri=REDIRECT_URI
    )
    (page,) = await oauth.facebook_pages(user.access_token)
    fake.reset()
    return Credentials(
        instagram_code=fake.issue_code(),
        facebook_code=fake.issue_code(login="facebook"),
        instagram_short=short.access_token,
        instagram_long=long_lived.access_token,
        facebook_user=user.access_token,
        page=page,
    )


@pytest.fixture
def seen(http: httpx2.AsyncClient) -> list[httpx2.Request]:
    """Every request the OAuth client sends through ``http``."""
    requests: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        requests.append(request)

    http.event_hooks["request"].append(record)
    return requests


def _mock(answer: Callable[[httpx2.Request], httpx2.Response]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(answer))


def _assert_data_free(error: OAuthStepError, credentials: Credentials) -> None:
    for value in credentials.values():
        assert value not in str(error)
        assert value not in repr(error)
    assert error.__cause__ is None
    assert error.__context__ is None


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# Authorize URLs


def test_instagram_authorize_url_asks_for_a_code_with_the_business_scopes(
    oauth: MetaOAuthClient,
) -> None:
    url = oauth.instagram_authorize_url(redirect_uri=REDIRECT_URI, state=STATE)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/oauth/authorize"
    assert _query(url) == {
        "client_id": ["ig-app-id"],
        "redirect_uri": [REDIRECT_URI],
        "response_type": ["code"],
        "scope": ["instagram_business_basic,instagram_business_manage_messages"],
        "state": [STATE],
    }


def test_facebook_authorize_url_is_the_versioned_dialog_with_the_page_scopes(
    oauth: MetaOAuthClient,
) -> None:
    url = oauth.facebook_authorize_url(redirect_uri=REDIRECT_URI, state=STATE)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/v23.0/dialog/oauth"
    assert _query(url) == {
        "client_id": ["fb-app-id"],
        "redirect_uri": [REDIRECT_URI],
        "state": [STATE],
        "response_type": ["code"],
        "scope": [
            "instagram_basic,instagram_manage_messages,pages_manage_metadata,"
            "pages_show_list,pages_read_engagement"
        ],
    }


async def test_the_browser_step_yields_a_code_the_exchange_accepts(
    http: httpx2.AsyncClient, oauth: MetaOAuthClient
) -> None:
    redirect = await http.get(oauth.instagram_authorize_url(redirect_uri=REDIRECT_URI, state=STATE))

    location = redirect.headers["location"]
    assert redirect.status_code == 302
    assert location.startswith(f"{REDIRECT_URI}?")
    assert _query(location)["state"] == [STATE]
    token = await oauth.exchange_instagram_code(
        code=_query(location)["code"][0], redirect_uri=REDIRECT_URI
    )
    assert token.access_token.startswith("IGshort-")


@pytest.mark.parametrize("login", ["instagram", "facebook"])
async def test_a_declined_login_redirects_back_with_access_denied_and_the_state(
    http: httpx2.AsyncClient, fake: FakeGraphApi, oauth: MetaOAuthClient, login: str
) -> None:
    fake.decline_next_authorization()
    url = (
        oauth.instagram_authorize_url(redirect_uri=REDIRECT_URI, state=STATE)
        if login == "instagram"
        else oauth.facebook_authorize_url(redirect_uri=REDIRECT_URI, state=STATE)
    )

    redirect = await http.get(url)

    query = _query(redirect.headers["location"])
    assert redirect.status_code == 302
    assert query["error"] == ["access_denied"]
    assert query["error_reason"] == ["user_denied"]
    assert query["state"] == [STATE]
    assert "code" not in query


# Instagram Login


async def test_full_instagram_flow_connects_and_subscribes_the_account(
    fake: FakeGraphApi, oauth: MetaOAuthClient, clock: FixedClock
) -> None:
    short = await oauth.exchange_instagram_code(code=fake.issue_code(), redirect_uri=REDIRECT_URI)
    clock.advance(seconds=30)
    long_lived = await oauth.instagram_long_lived_token(short.access_token)
    account = await oauth.instagram_account(long_lived.access_token)
    await oauth.subscribe_instagram_account(long_lived.access_token)

    assert short.expires_at == NOW + timedelta(hours=1)
    assert long_lived.access_token.startswith("IGlong-")
    assert long_lived.expires_at == NOW + timedelta(seconds=30) + LONG_LIVED
    assert account == InstagramAccount(user_id=IG_USER_ID, username=IG_USERNAME)
    assert fake.subscriptions == {IG_USER_ID}
    assert fake.token_requests == ["oauth_token", "long_lived_token", "me", "subscribe"]


async def test_the_trailing_hash_underscore_of_a_callback_code_is_stripped(
    fake: FakeGraphApi, oauth: MetaOAuthClient
) -> None:
    token = await oauth.exchange_instagram_code(
        code=f"{fake.issue_code()}#_", redirect_uri=REDIRECT_URI
    )

    assert token.access_token.startswith("IGshort-")


async def test_a_code_exchange_answer_wrapped_in_data_is_accepted(clock: FixedClock) -> None:
    fake = FakeGraphApi(code_exchange_shape="data")
    fake.add_instagram_account(IG_USER_ID, IG_USERNAME)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app)) as client:
        oauth = MetaOAuthClient(client, SETTINGS, clock)
        token = await oauth.exchange_instagram_code(
            code=fake.issue_code(), redirect_uri=REDIRECT_URI
        )

    assert token == AccessToken(token.access_token, NOW + timedelta(hours=1))
    assert token.access_token.startswith("IGshort-")


async def test_a_reused_code_fails_the_code_exchange(
    fake: FakeGraphApi, oauth: MetaOAuthClient
) -> None:
    code = fake.issue_code()
    await oauth.exchange_instagram_code(code=code, redirect_uri=REDIRECT_URI)

    with pytest.raises(OAuthStepError) as caught:
        await oauth.exchange_instagram_code(code=code, redirect_uri=REDIRECT_URI)

    assert caught.value.step == "code_exchange"
    assert caught.value.reason == "graph_error:400"
    assert (caught.value.status, caught.value.code) == (400, 400)
    assert code not in str(caught.value)


async def test_a_code_from_the_authorize_page_needs_the_same_redirect_uri(
    http: httpx2.AsyncClient, oauth: MetaOAuthClient
) -> None:
    redirect = await http.get(oauth.instagram_authorize_url(redirect_uri=REDIRECT_URI, state=STATE))
    code = _query(redirect.headers["location"])["code"][0]

    with pytest.raises(OAuthStepError) as caught:
        await oauth.exchange_instagram_code(code=code, redirect_uri="https://elsewhere.test/cb")

    assert caught.value.step == "code_exchange"


@pytest.mark.parametrize(
    ("secret_field", "call", "reason"),
    [
        (
            "instagram_app_secret",
            lambda o, c: o.exchange_instagram_code(
                code=c.instagram_code, redirect_uri=REDIRECT_URI
            ),
            "graph_error:400",
        ),
        (
            "facebook_app_secret",
            lambda o, c: o.exchange_facebook_code(code=c.facebook_code, redirect_uri=REDIRECT_URI),
            "graph_error:100",
        ),
    ],
    ids=["instagram", "facebook"],
)
async def test_a_wrong_app_secret_fails_the_code_exchange(
    http: httpx2.AsyncClient,
    clock: FixedClock,
    credentials: Credentials,
    secret_field: str,
    call: Step,
    reason: str,
) -> None:
    wrong = replace(SETTINGS, **{secret_field: "not-the-app-secret"})

    with pytest.raises(OAuthStepError) as caught:
        await call(MetaOAuthClient(http, wrong, clock), credentials)

    assert (caught.value.step, caught.value.reason) == ("code_exchange", reason)
    assert "not-the-app-secret" not in str(caught.value)


async def test_refresh_gives_a_new_long_lived_token_and_the_old_one_keeps_working(
    oauth: MetaOAuthClient, credentials: Credentials, clock: FixedClock
) -> None:
    clock.advance(days=2)

    refreshed = await oauth.refresh_instagram_token(credentials.instagram_long)

    assert refreshed.access_token != credentials.instagram_long
    assert refreshed.access_token.startswith("IGlong-")
    assert refreshed.expires_at == NOW + timedelta(days=2) + LONG_LIVED
    assert (await oauth.instagram_account(credentials.instagram_long)).user_id == IG_USER_ID


async def test_unsubscribe_removes_the_instagram_subscription(
    fake: FakeGraphApi, oauth: MetaOAuthClient, credentials: Credentials
) -> None:
    await oauth.subscribe_instagram_account(credentials.instagram_long)

    await oauth.unsubscribe_instagram_account(credentials.instagram_long)

    assert fake.subscriptions == set()
    assert fake.token_requests == ["subscribe", "subscribe"]


# Facebook Login


async def test_full_facebook_flow_finds_the_page_and_subscribes_it(
    fake: FakeGraphApi, oauth: MetaOAuthClient
) -> None:
    fake.add_facebook_page("104000000000002", "Old clinic page", None)

    user = await oauth.exchange_facebook_code(
        code=fake.issue_code(login="facebook"), redirect_uri=REDIRECT_URI
    )
    long_lived = await oauth.facebook_long_lived_user_token(user.access_token)
    pages = await oauth.facebook_pages(long_lived.access_token)
    await oauth.subscribe_facebook_page(pages[0].page_id, pages[0].access_token)

    assert user.expires_at == NOW + LONG_LIVED
    assert long_lived.access_token.startswith("EAAuserlong-")
    assert long_lived.expires_at == NOW + LONG_LIVED
    assert [(p.page_id, p.name, p.instagram_account_id) for p in pages] == [
        (PAGE_ID, PAGE_NAME, IG_USER_ID),
        ("104000000000002", "Old clinic page", None),
    ]
    assert pages[0].access_token.startswith(f"EAApage-{PAGE_ID}-")
    assert fake.subscriptions == {PAGE_ID}
    assert fake.token_requests == ["oauth_token", "long_lived_token", "accounts", "subscribe"]


async def test_unsubscribe_removes_the_page_subscription(
    fake: FakeGraphApi, oauth: MetaOAuthClient, credentials: Credentials
) -> None:
    await oauth.subscribe_facebook_page(PAGE_ID, credentials.page.access_token)

    await oauth.unsubscribe_facebook_page(PAGE_ID, credentials.page.access_token)

    assert fake.subscriptions == set()


async def test_pages_follow_metas_cursors_across_several_pages_of_results(
    fake: FakeGraphApi, oauth: MetaOAuthClient, credentials: Credentials
) -> None:
    for number in range(2, 31):
        fake.add_facebook_page(f"1040000000000{number:02d}", f"Page {number}", None)

    pages = await oauth.facebook_pages(credentials.facebook_user)

    assert len(pages) == 30
    assert len({page.page_id for page in pages}) == 30
    assert fake.token_requests == ["accounts", "accounts"]


async def test_pages_give_up_after_too_many_result_pages(clock: FixedClock) -> None:
    requests: list[httpx2.Request] = []

    def endless(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        page = {"id": PAGE_ID, "name": PAGE_NAME, "access_token": "EAApage-x"}
        paging = {"cursors": {"after": f"c{len(requests)}"}, "next": "https://meta.test/next"}
        return httpx2.Response(200, json={"data": [page], "paging": paging})

    async with _mock(endless) as client:
        with pytest.raises(OAuthStepError) as caught:
            await MetaOAuthClient(client, SETTINGS, clock).facebook_pages("EAAuser-x")

    assert (caught.value.step, caught.value.reason) == ("pages", "too_many_pages")
    assert len(requests) == MAX_PAGE_REQUESTS


# Where tokens travel


async def test_account_subscribe_and_pages_send_tokens_only_in_the_authorization_header(
    oauth: MetaOAuthClient, credentials: Credentials, seen: list[httpx2.Request]
) -> None:
    page = credentials.page
    await oauth.instagram_account(credentials.instagram_long)
    await oauth.subscribe_instagram_account(credentials.instagram_long)
    await oauth.unsubscribe_instagram_account(credentials.instagram_long)
    await oauth.facebook_pages(credentials.facebook_user)
    await oauth.subscribe_facebook_page(page.page_id, page.access_token)
    await oauth.unsubscribe_facebook_page(page.page_id, page.access_token)

    tokens = (
        [credentials.instagram_long] * 3 + [credentials.facebook_user] + [page.access_token] * 2
    )
    assert [request.headers["authorization"] for request in seen] == [f"Bearer {t}" for t in tokens]
    for request, token in zip(seen, tokens, strict=True):
        assert token not in str(request.url)
        assert token.encode() not in request.content
    assert [(request.method, request.url.path) for request in seen] == [
        ("GET", "/v23.0/me"),
        ("POST", "/v23.0/me/subscribed_apps"),
        ("DELETE", "/v23.0/me/subscribed_apps"),
        ("GET", "/v23.0/me/accounts"),
        ("POST", f"/v23.0/{PAGE_ID}/subscribed_apps"),
        ("DELETE", f"/v23.0/{PAGE_ID}/subscribed_apps"),
    ]
    assert _query(str(seen[0].url)) == {"fields": ["user_id,username"]}
    assert _query(str(seen[1].url)) == {"subscribed_fields": [INSTAGRAM_FIELDS]}
    assert _query(str(seen[4].url)) == {"subscribed_fields": [PAGE_FIELDS]}


async def test_the_instagram_code_exchange_posts_a_form_and_keeps_the_url_clean(
    fake: FakeGraphApi, oauth: MetaOAuthClient, seen: list[httpx2.Request]
) -> None:
    code = fake.issue_code()

    await oauth.exchange_instagram_code(code=f"{code}#_", redirect_uri=REDIRECT_URI)

    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/oauth/access_token")
    assert "authorization" not in request.headers
    assert parse_qs(request.content.decode()) == {
        "client_id": ["ig-app-id"],
        "client_secret": ["ig-app-secret"],
        "grant_type": ["authorization_code"],
        "redirect_uri": [REDIRECT_URI],
        "code": [code],
    }


async def test_the_token_exchanges_put_what_meta_insists_on_in_the_query(
    fake: FakeGraphApi,
    oauth: MetaOAuthClient,
    credentials: Credentials,
    seen: list[httpx2.Request],
) -> None:
    await oauth.instagram_long_lived_token(credentials.instagram_short)
    await oauth.refresh_instagram_token(credentials.instagram_long)
    await oauth.exchange_facebook_code(code=credentials.facebook_code, redirect_uri=REDIRECT_URI)
    await oauth.facebook_long_lived_user_token(credentials.facebook_user)

    assert [(request.method, request.url.path) for request in seen] == [
        ("GET", "/access_token"),
        ("GET", "/refresh_access_token"),
        ("GET", "/v23.0/oauth/access_token"),
        ("GET", "/v23.0/oauth/access_token"),
    ]
    assert all("authorization" not in request.headers for request in seen)
    assert [_query(str(request.url)) for request in seen] == [
        {
            "grant_type": ["ig_exchange_token"],
            "client_secret": ["ig-app-secret"],
            "access_token": [credentials.instagram_short],
        },
        {"grant_type": ["ig_refresh_token"], "access_token": [credentials.instagram_long]},
        {
            "client_id": ["fb-app-id"],
            "redirect_uri": [REDIRECT_URI],
            "client_secret": ["fb-app-secret"],
            "code": [credentials.facebook_code],
        },
        {
            "grant_type": ["fb_exchange_token"],
            "client_id": ["fb-app-id"],
            "client_secret": ["fb-app-secret"],
            "fb_exchange_token": [credentials.facebook_user],
        },
    ]


def test_reprs_hide_tokens_and_app_secrets() -> None:
    token = AccessToken("IGlong-secret-token", NOW)
    page = FacebookPage(PAGE_ID, PAGE_NAME, "EAApage-secret-token", IG_USER_ID)

    assert "IGlong-secret-token" not in repr(token)
    assert "EAApage-secret-token" not in repr(page)
    assert "ig-app-secret" not in repr(SETTINGS)
    assert "fb-app-secret" not in repr(SETTINGS)


# Failures of each step


@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_a_graph_error_fails_the_step_without_revealing_credentials(
    fake: FakeGraphApi,
    oauth: MetaOAuthClient,
    credentials: Credentials,
    endpoint: FakeEndpoint,
    step: str,
    call: Step,
) -> None:
    fake.fail_next(status=500, code=2, endpoint=endpoint)

    with pytest.raises(OAuthStepError) as caught:
        await call(oauth, credentials)

    assert (caught.value.step, caught.value.reason) == (step, "graph_error:2")
    assert (caught.value.status, caught.value.code) == (500, 2)
    _assert_data_free(caught.value, credentials)


@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_code_190_fails_the_step_as_token_rejected(
    fake: FakeGraphApi,
    oauth: MetaOAuthClient,
    credentials: Credentials,
    endpoint: FakeEndpoint,
    step: str,
    call: Step,
) -> None:
    fake.fail_next(status=400, code=190, error_subcode=463, endpoint=endpoint)

    with pytest.raises(OAuthStepError) as caught:
        await call(oauth, credentials)

    assert (caught.value.step, caught.value.reason, caught.value.code) == (
        step,
        "token_rejected",
        190,
    )
    _assert_data_free(caught.value, credentials)


@pytest.mark.parametrize(
    ("token_of", "call", "step"),
    [
        (lambda c: c.instagram_long, lambda o, c: o.instagram_account(c.instagram_long), "account"),
        (
            lambda c: c.instagram_long,
            lambda o, c: o.refresh_instagram_token(c.instagram_long),
            "refresh",
        ),
        (
            lambda c: c.instagram_long,
            lambda o, c: o.subscribe_instagram_account(c.instagram_long),
            "subscribe",
        ),
        (lambda c: c.facebook_user, lambda o, c: o.facebook_pages(c.facebook_user), "pages"),
        (
            lambda c: c.page.access_token,
            lambda o, c: o.subscribe_facebook_page(PAGE_ID, c.page.access_token),
            "subscribe",
        ),
    ],
    ids=["account", "refresh", "subscribe-instagram", "pages", "subscribe-page"],
)
async def test_a_revoked_token_is_reported_as_token_rejected(
    fake: FakeGraphApi,
    oauth: MetaOAuthClient,
    credentials: Credentials,
    token_of: Callable[[Credentials], str],
    call: Step,
    step: str,
) -> None:
    fake.reject_token(token_of(credentials))

    with pytest.raises(OAuthStepError) as caught:
        await call(oauth, credentials)

    assert (caught.value.step, caught.value.reason) == (step, "token_rejected")
    _assert_data_free(caught.value, credentials)


@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_a_hung_meta_fails_the_step_as_timeout(
    fake: FakeGraphApi,
    clock: FixedClock,
    credentials: Credentials,
    endpoint: FakeEndpoint,
    step: str,
    call: Step,
) -> None:
    fake.hang_next(seconds=5.0, endpoint=endpoint)

    async with fake.serve() as base_url, httpx2.AsyncClient(timeout=0.2) as client:
        oauth = MetaOAuthClient(client, _pointed_at(base_url), clock)
        with pytest.raises(OAuthStepError) as caught:
            await call(oauth, credentials)

    assert (caught.value.step, caught.value.reason) == (step, "timeout")
    _assert_data_free(caught.value, credentials)


@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_an_unreachable_meta_fails_the_step_as_unreachable(
    clock: FixedClock, endpoint: FakeEndpoint, step: str, call: Step
) -> None:
    async with httpx2.AsyncClient(timeout=2.0) as client:
        oauth = MetaOAuthClient(client, _pointed_at("http://127.0.0.1:1"), clock)
        with pytest.raises(OAuthStepError) as caught:
            await call(oauth, DUMMY_CREDENTIALS)

    assert (caught.value.step, caught.value.reason) == (step, "unreachable")
    _assert_data_free(caught.value, DUMMY_CREDENTIALS)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"unexpected": true}'])
@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_a_2xx_with_a_malformed_body_fails_the_step_as_malformed(
    clock: FixedClock, endpoint: FakeEndpoint, step: str, call: Step, body: bytes
) -> None:
    async with _mock(lambda _: httpx2.Response(200, content=body)) as client:
        with pytest.raises(OAuthStepError) as caught:
            await call(MetaOAuthClient(client, SETTINGS, clock), DUMMY_CREDENTIALS)

    assert (caught.value.step, caught.value.reason) == (step, "malformed_response")
    _assert_data_free(caught.value, DUMMY_CREDENTIALS)


@pytest.mark.parametrize(("endpoint", "step", "call"), STEPS)
async def test_a_body_that_cannot_be_decoded_fails_the_step_as_malformed(
    clock: FixedClock, endpoint: FakeEndpoint, step: str, call: Step
) -> None:
    def garbled(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})

    async with _mock(garbled) as client:
        with pytest.raises(OAuthStepError) as caught:
            await call(MetaOAuthClient(client, SETTINGS, clock), DUMMY_CREDENTIALS)

    assert (caught.value.step, caught.value.reason) == (step, "malformed_response")
    _assert_data_free(caught.value, DUMMY_CREDENTIALS)


async def test_an_error_without_a_json_body_is_reported_by_its_status(clock: FixedClock) -> None:
    async with _mock(lambda _: httpx2.Response(502, content=b"<html>Bad gateway</html>")) as client:
        with pytest.raises(OAuthStepError) as caught:
            await MetaOAuthClient(client, SETTINGS, clock).instagram_account("IGlong-x")

    assert (caught.value.reason, caught.value.status, caught.value.code) == (
        "graph_error:502",
        502,
        None,
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"user_id": 17841455512340001}, InstagramAccount(IG_USER_ID, None)),
        ({"user_id": IG_USER_ID, "username": "dr"}, InstagramAccount(IG_USER_ID, "dr")),
        ({"id": "9017841455512340001", "username": "dr"}, None),
        ({"user_id": True}, None),
        ({"user_id": IG_USER_ID, "username": 7}, None),
    ],
    ids=["numeric-id-no-username", "string-id", "only-app-scoped-id", "bool-id", "bad-username"],
)
async def test_the_account_takes_user_id_not_the_app_scoped_id(
    clock: FixedClock, answer: dict[str, object], expected: InstagramAccount | None
) -> None:
    async with _mock(lambda _: httpx2.Response(200, json=answer)) as client:
        oauth = MetaOAuthClient(client, SETTINGS, clock)
        if expected is None:
            with pytest.raises(OAuthStepError, match="malformed_response"):
                await oauth.instagram_account("IGlong-x")
        else:
            assert await oauth.instagram_account("IGlong-x") == expected


@pytest.mark.parametrize(
    ("answer", "expires_at"),
    [
        ({"access_token": "EAAuser-x"}, None),
        ({"access_token": "EAAuser-x", "expires_in": 3600}, NOW + timedelta(hours=1)),
        ({"access_token": "EAAuser-x", "expires_in": "3600"}, "malformed"),
        ({"access_token": "EAAuser-x", "expires_in": -1}, "malformed"),
        ({"access_token": "", "expires_in": 3600}, "malformed"),
    ],
    ids=["no-lifetime", "lifetime", "string-lifetime", "negative-lifetime", "empty-token"],
)
async def test_a_token_expires_after_its_expires_in_or_never_when_meta_gives_none(
    clock: FixedClock, answer: dict[str, object], expires_at: datetime | str | None
) -> None:
    async with _mock(lambda _: httpx2.Response(200, json=answer)) as client:
        oauth = MetaOAuthClient(client, SETTINGS, clock)
        exchange = oauth.exchange_facebook_code(code="AQcode", redirect_uri=REDIRECT_URI)
        if expires_at == "malformed":
            with pytest.raises(OAuthStepError, match="malformed_response"):
                await exchange
        else:
            assert (await exchange).expires_at == expires_at


@pytest.mark.parametrize(
    "answer",
    [
        {"data": []},
        {"data": {"access_token": "IGshort-x"}},
        {"data": ["IGshort-x"]},
    ],
)
async def test_a_malformed_data_wrapper_fails_the_code_exchange(
    clock: FixedClock, answer: dict[str, object]
) -> None:
    async with _mock(lambda _: httpx2.Response(200, json=answer)) as client:
        oauth = MetaOAuthClient(client, SETTINGS, clock)
        with pytest.raises(OAuthStepError) as caught:
            await oauth.exchange_instagram_code(code="AQcode", redirect_uri=REDIRECT_URI)

    assert (caught.value.step, caught.value.reason) == ("code_exchange", "malformed_response")


@pytest.mark.parametrize(
    "page",
    [
        {"name": PAGE_NAME, "access_token": "EAApage-x"},
        {"id": PAGE_ID, "access_token": "EAApage-x"},
        {"id": PAGE_ID, "name": PAGE_NAME},
        {
            "id": PAGE_ID,
            "name": PAGE_NAME,
            "access_token": "EAApage-x",
            "instagram_business_account": {},
        },
        "not a page",
    ],
    ids=["no-id", "no-name", "no-token", "linked-account-without-id", "not-an-object"],
)
async def test_a_malformed_page_fails_the_pages_step(clock: FixedClock, page: object) -> None:
    answer = {"data": [page]}
    async with _mock(lambda _: httpx2.Response(200, content=json.dumps(answer).encode())) as client:
        oauth = MetaOAuthClient(client, SETTINGS, clock)
        with pytest.raises(OAuthStepError) as caught:
            await oauth.facebook_pages("EAAuser-x")

    assert (caught.value.step, caught.value.reason) == ("pages", "malformed_response")


async def test_a_next_page_without_a_cursor_fails_the_pages_step(clock: FixedClock) -> None:
    answer = {"data": [], "paging": {"next": "https://meta.test/next"}}
    async with _mock(lambda _: httpx2.Response(200, json=answer)) as client:
        with pytest.raises(OAuthStepError, match="malformed_response"):
            await MetaOAuthClient(client, SETTINGS, clock).facebook_pages("EAAuser-x")


def _pointed_at(base_url: str) -> MetaOAuthSettings:
    return replace(
        SETTINGS,
        instagram_authorize_url=f"{base_url}/oauth/authorize",
        instagram_oauth_url=base_url,
        graph_api_url=base_url,
        facebook_authorize_url=base_url,
        facebook_graph_api_url=base_url,
    )
