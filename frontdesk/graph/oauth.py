"""Meta OAuth and account calls of "Connect Instagram"; no token or secret reaches an error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx2

from frontdesk.clock import Clock
from frontdesk.errors import PermanentError
from frontdesk.graph.errors import TOKEN_REJECTED_CODE

OAuthStep = Literal[
    "code_exchange", "long_lived_token", "refresh", "account", "subscribe", "unsubscribe", "pages"
]

INSTAGRAM_SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")
FACEBOOK_SCOPES = (
    "instagram_basic",
    "instagram_manage_messages",
    "pages_manage_metadata",
    "pages_show_list",
    "pages_read_engagement",
)
INSTAGRAM_WEBHOOK_FIELDS = (
    "messages",
    "message_reactions",
    "messaging_seen",
    "messaging_postbacks",
    "message_edit",
)
PAGE_WEBHOOK_FIELDS = ("messages", "messaging_postbacks", "messaging_seen", "message_reactions")
PAGE_FIELDS = "id,name,access_token,instagram_business_account"
SHORT_LIVED_INSTAGRAM_TOKEN = timedelta(hours=1)
MAX_PAGE_REQUESTS = 20


@dataclass(frozen=True)
class AccessToken:
    """A token Meta issued, with when it expires (None when Meta gave no lifetime)."""

    access_token: str = field(repr=False)
    expires_at: datetime | None


@dataclass(frozen=True)
class InstagramAccount:
    """The connected professional account; `user_id` is the id webhooks carry (not `id`)."""

    user_id: str
    username: str | None


@dataclass(frozen=True)
class FacebookPage:
    """A Page the Facebook user manages, its Page token and the Instagram account linked to it."""

    page_id: str
    name: str
    access_token: str = field(repr=False)
    instagram_account_id: str | None


class OAuthStepError(PermanentError):
    """A Meta call of the connect flow failed; `step` names which, `reason` is data-free."""

    def __init__(
        self, step: OAuthStep, reason: str, *, status: int | None = None, code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.step = step
        self.status = status
        self.code = code


@dataclass(frozen=True)
class MetaOAuthSettings:
    """App credentials and the Meta hosts of both logins (tests point them all at one fake)."""

    instagram_app_id: str
    instagram_app_secret: str = field(repr=False)
    facebook_app_id: str
    facebook_app_secret: str = field(repr=False)
    instagram_authorize_url: str
    instagram_oauth_url: str
    graph_api_url: str
    facebook_authorize_url: str
    facebook_graph_api_url: str
    version: str


class MetaOAuthClient:
    """The calls of both connect flows: Instagram Login and Facebook Login (Page-linked)."""

    def __init__(self, http: httpx2.AsyncClient, settings: MetaOAuthSettings, clock: Clock) -> None:
        self._http = http
        self._settings = settings
        self._clock = clock
        self._instagram_host = settings.graph_api_url.rstrip("/")
        self._instagram_graph = f"{self._instagram_host}/{settings.version}"
        self._facebook_graph = f"{settings.facebook_graph_api_url.rstrip('/')}/{settings.version}"

    def instagram_authorize_url(self, *, redirect_uri: str, state: str) -> str:
        """Where the doctor's browser goes to log in with Instagram."""
        query = {
            "client_id": self._settings.instagram_app_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": ",".join(INSTAGRAM_SCOPES),
            "state": state,
        }
        return f"{self._settings.instagram_authorize_url}?{urlencode(query)}"

    def facebook_authorize_url(self, *, redirect_uri: str, state: str) -> str:
        """Where the doctor's browser goes to log in with Facebook and pick the clinic's Page."""
        base = self._settings.facebook_authorize_url.rstrip("/")
        query = {
            "client_id": self._settings.facebook_app_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "response_type": "code",
            "scope": ",".join(FACEBOOK_SCOPES),
        }
        return f"{base}/{self._settings.version}/dialog/oauth?{urlencode(query)}"

    async def exchange_instagram_code(self, *, code: str, redirect_uri: str) -> AccessToken:
        """Trade the callback's code for a short-lived (1 h) Instagram token."""
        url = f"{self._settings.instagram_oauth_url.rstrip('/')}/oauth/access_token"
        form = {
            "client_id": self._settings.instagram_app_id,
            "client_secret": self._settings.instagram_app_secret,
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
            "code": code.removesuffix("#_"),
        }
        body = await self._request("code_exchange", "POST", url, form=form)
        return self._token("code_exchange", _first_of_data(body), SHORT_LIVED_INSTAGRAM_TOKEN)

    async def instagram_long_lived_token(self, short_lived: str) -> AccessToken:
        """Trade a short-lived Instagram token for a 60-day one (Meta wants both in the query)."""
        query = {
            "grant_type": "ig_exchange_token",
            "client_secret": self._settings.instagram_app_secret,
            "access_token": short_lived,
        }
        return await self._get_token(
            "long_lived_token", f"{self._instagram_host}/access_token", query
        )

    async def refresh_instagram_token(self, long_lived: str) -> AccessToken:
        """A new 60-day token for a long-lived one that is at least a day old and not expired."""
        query = {"grant_type": "ig_refresh_token", "access_token": long_lived}
        return await self._get_token(
            "refresh", f"{self._instagram_host}/refresh_access_token", query
        )

    async def instagram_account(self, access_token: str) -> InstagramAccount:
        """The logged-in professional account: its webhook id (`user_id`) and username."""
        url = f"{self._instagram_graph}/me"
        query = {"fields": "user_id,username"}
        body = await self._request("account", "GET", url, token=access_token, query=query)
        user_id = _id_or_none(body.get("user_id"))
        username = body.get("username")
        if user_id is None or not isinstance(username, str | None):
            raise OAuthStepError("account", "malformed_response")
        return InstagramAccount(user_id=user_id, username=username)

    async def subscribe_instagram_account(self, access_token: str) -> None:
        """Have Meta send this account's messaging webhooks to the app."""
        query = {"subscribed_fields": ",".join(INSTAGRAM_WEBHOOK_FIELDS)}
        url = f"{self._instagram_graph}/me/subscribed_apps"
        await self._confirm("subscribe", "POST", url, token=access_token, query=query)

    async def unsubscribe_instagram_account(self, access_token: str) -> None:
        """Stop this account's webhooks to the app."""
        url = f"{self._instagram_graph}/me/subscribed_apps"
        await self._confirm("unsubscribe", "DELETE", url, token=access_token)

    async def exchange_facebook_code(self, *, code: str, redirect_uri: str) -> AccessToken:
        """Trade the Facebook Login callback's code for a user token."""
        query = {
            "client_id": self._settings.facebook_app_id,
            "redirect_uri": redirect_uri,
            "client_secret": self._settings.facebook_app_secret,
            "code": code,
        }
        return await self._get_token(
            "code_exchange", f"{self._facebook_graph}/oauth/access_token", query
        )

    async def facebook_long_lived_user_token(self, user_token: str) -> AccessToken:
        """A ~60-day user token; Page tokens fetched with it do not expire."""
        query = {
            "grant_type": "fb_exchange_token",
            "client_id": self._settings.facebook_app_id,
            "client_secret": self._settings.facebook_app_secret,
            "fb_exchange_token": user_token,
        }
        return await self._get_token(
            "long_lived_token", f"{self._facebook_graph}/oauth/access_token", query
        )

    async def facebook_pages(self, user_token: str) -> list[FacebookPage]:
        """Every Page the user manages, following Meta's cursors (never its `next` URL)."""
        url = f"{self._facebook_graph}/me/accounts"
        pages: list[FacebookPage] = []
        query = {"fields": PAGE_FIELDS}
        for _ in range(MAX_PAGE_REQUESTS):
            body = await self._request("pages", "GET", url, token=user_token, query=query)
            pages.extend(_pages(body))
            after = _next_cursor(body)
            if after is None:
                return pages
            query = {"fields": PAGE_FIELDS, "after": after}
        raise OAuthStepError("pages", "too_many_pages")

    async def subscribe_facebook_page(self, page_id: str, page_token: str) -> None:
        """Have Meta send the Page's messaging webhooks to the app."""
        query = {"subscribed_fields": ",".join(PAGE_WEBHOOK_FIELDS)}
        url = f"{self._facebook_graph}/{page_id}/subscribed_apps"
        await self._confirm("subscribe", "POST", url, token=page_token, query=query)

    async def unsubscribe_facebook_page(self, page_id: str, page_token: str) -> None:
        """Stop the Page's webhooks to the app."""
        url = f"{self._facebook_graph}/{page_id}/subscribed_apps"
        await self._confirm("unsubscribe", "DELETE", url, token=page_token)

    async def _get_token(self, step: OAuthStep, url: str, query: Mapping[str, str]) -> AccessToken:
        return self._token(step, await self._request(step, "GET", url, query=query))

    async def _confirm(
        self,
        step: OAuthStep,
        method: str,
        url: str,
        *,
        token: str,
        query: Mapping[str, str] | None = None,
    ) -> None:
        body = await self._request(step, method, url, token=token, query=query)
        if body.get("success") is not True:
            raise OAuthStepError(step, "malformed_response")

    async def _request(
        self,
        step: OAuthStep,
        method: str,
        url: str,
        *,
        token: str | None = None,
        query: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        response = await _send(
            self._http, step, method, url, headers=headers, params=query, data=form
        )
        body = _json_or_none(response)
        if not response.is_success:
            raise _graph_error(step, response.status_code, body)
        if not isinstance(body, dict):
            raise OAuthStepError(step, "malformed_response")
        return body

    def _token(
        self, step: OAuthStep, body: Mapping[str, Any], default_lifetime: timedelta | None = None
    ) -> AccessToken:
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthStepError(step, "malformed_response")
        lifetime = _lifetime(step, body.get("expires_in"), default_lifetime)
        expires_at = self._clock.now() + lifetime if lifetime is not None else None
        return AccessToken(access_token=token, expires_at=expires_at)


async def _send(
    http: httpx2.AsyncClient, step: OAuthStep, method: str, url: str, **kwargs: Any
) -> httpx2.Response:
    """The request, or an error raised outside the `except` so no URL rides along as context."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx2.TimeoutException:
        reason = "timeout"
    except httpx2.TransportError:
        reason = "unreachable"
    except httpx2.DecodingError:
        reason = "malformed_response"
    raise OAuthStepError(step, reason)


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _graph_error(step: OAuthStep, status: int, body: Any) -> OAuthStepError:
    code = _error_code(body)
    reason = "token_rejected" if code == TOKEN_REJECTED_CODE else f"graph_error:{code or status}"
    return OAuthStepError(step, reason, status=status, code=code)


def _error_code(body: Any) -> int | None:
    """`code` of a Graph error (`{"error": {...}}`) or of an Instagram OAuth one (top level)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else body.get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _first_of_data(body: dict[str, Any]) -> Mapping[str, Any]:
    """Newer code-exchange answers wrap the token in `data: [{...}]`; older ones do not."""
    if "data" not in body:
        return body
    data = body["data"]
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise OAuthStepError("code_exchange", "malformed_response")
    return data[0]


def _lifetime(step: OAuthStep, expires_in: Any, default: timedelta | None) -> timedelta | None:
    if expires_in is None:
        return default
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 0:
        raise OAuthStepError(step, "malformed_response")
    return timedelta(seconds=expires_in)


def _id_or_none(value: Any) -> str | None:
    """A Graph id, which Meta sends as a string (and sometimes as a number)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _pages(body: dict[str, Any]) -> list[FacebookPage]:
    data = body.get("data")
    if not isinstance(data, list):
        raise OAuthStepError("pages", "malformed_response")
    return [_page(item) for item in data]


def _page(item: Any) -> FacebookPage:
    if not isinstance(item, dict):
        raise OAuthStepError("pages", "malformed_response")
    page_id = _id_or_none(item.get("id"))
    name, token = item.get("name"), item.get("access_token")
    linked = item.get("instagram_business_account")
    instagram_account_id = _id_or_none(linked.get("id")) if isinstance(linked, dict) else None
    if page_id is None or not isinstance(name, str) or not isinstance(token, str) or not token:
        raise OAuthStepError("pages", "malformed_response")
    if linked is not None and instagram_account_id is None:
        raise OAuthStepError("pages", "malformed_response")
    return FacebookPage(
        page_id=page_id, name=name, access_token=token, instagram_account_id=instagram_account_id
    )


def _next_cursor(body: dict[str, Any]) -> str | None:
    """The `after` cursor when Meta says there is a next page, else None."""
    paging = body.get("paging")
    if not isinstance(paging, dict) or "next" not in paging:
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if not isinstance(after, str) or not after:
        raise OAuthStepError("pages", "malformed_response")
    return after
