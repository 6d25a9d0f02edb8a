"""Fake Meta Graph API: Send, OAuth and account endpoints over real HTTP, scripted to fail."""

import asyncio
import contextlib
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

MAX_TEXT_LENGTH = 1000
UNEXPECTED_ERROR_MESSAGE = "An unexpected error has occurred. Please retry your request later."

Login = Literal["instagram", "facebook"]
FakeEndpoint = Literal[
    "messages", "oauth_token", "long_lived_token", "refresh", "me", "subscribe", "accounts"
]
FAKE_ENDPOINTS: tuple[FakeEndpoint, ...] = get_args(FakeEndpoint)
CodeExchangeShape = Literal["flat", "data"]

INSTAGRAM_PERMISSIONS = "instagram_business_basic,instagram_business_manage_messages"
LONG_LIVED_EXPIRES_IN = 5183944
ACCOUNTS_PAGE_SIZE = 25
APP_SCOPED_ID_OFFSET = 9_000_000_000_000_000
FACEBOOK_USER = "facebook-user"
DECLINED_DESCRIPTION = "The user denied your request."


@dataclass(frozen=True)
class RecordedSend:
    """One successful Send API call, as the fake received it."""

    account_id: str
    version: str
    access_token: str = field(repr=False)
    recipient_id: str
    text: str = field(repr=False)
    message_id: str
    body: dict[str, object] = field(repr=False)


@dataclass(eq=False)
class _GraphError(Exception):
    """A Graph API error reply; raised while handling a request, or queued by fail_next."""

    status: int
    code: int
    message: str
    error_subcode: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        error: dict[str, object] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
        }
        if self.error_subcode is not None:
            error["error_subcode"] = self.error_subcode
        error["fbtrace_id"] = secrets.token_urlsafe(8)
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


class _InstagramOAuthError(_GraphError):
    """An error of api.instagram.com's OAuth endpoints, which use their own flat shape."""

    def response(self) -> JSONResponse:
        body = {"error_type": "OAuthException", "code": self.code, "error_message": self.message}
        return JSONResponse(body, status_code=self.status)


ErrorFactory = Callable[[str], _GraphError]


def _invalid_parameter(message: str) -> _GraphError:
    return _GraphError(status=400, code=100, message=message)


def _instagram_oauth_error(message: str) -> _GraphError:
    return _InstagramOAuthError(status=400, code=400, message=message)


def _session_expired() -> _GraphError:
    return _GraphError(
        status=400,
        code=190,
        message="Error validating access token: Session has expired",
        error_subcode=463,
    )


def _unparseable_token() -> _GraphError:
    return _GraphError(
        status=400, code=190, message="Invalid OAuth access token - Cannot parse access token"
    )


@dataclass(frozen=True)
class _Hang:
    """A scripted delay before the request is handled normally."""

    seconds: float


@dataclass(frozen=True)
class _SendRequest:
    recipient_id: str
    text: str
    body: dict[str, object]


_TokenKind = Literal["instagram_short", "instagram_long", "facebook_user", "facebook_page"]
INSTAGRAM_TOKENS: frozenset[_TokenKind] = frozenset({"instagram_short", "instagram_long"})
SUBSCRIBER_TOKENS: frozenset[_TokenKind] = INSTAGRAM_TOKENS | {"facebook_page"}
_Answer = Callable[[Request], Awaitable[dict[str, object]]]


@dataclass(frozen=True)
class _Grant:
    """What an issued token stands for: its kind and the IG user id, page id or Facebook user."""

    kind: _TokenKind
    subject: str


@dataclass
class _Code:
    """An authorization code; Instagram codes name the account, Facebook ones the one user."""

    redirect_uri: str | None
    user_id: str = FACEBOOK_USER
    used: bool = False


@dataclass(frozen=True)
class _InstagramAccount:
    username: str
    app_scoped_id: str


@dataclass(frozen=True)
class _Page:
    name: str
    instagram_account_id: str | None


class FakeGraphApi:
    """In-memory stand-in for the Meta endpoints Frontdesk calls, all on one app.

    Send: ``POST /{version}/{account_id}/messages``. Connect Instagram: the authorize pages
    (``/oauth/authorize``, ``/{version}/dialog/oauth``), the token endpoints of both logins,
    ``/{version}/me``, ``/{version}/me/accounts`` and ``/{version}/{account}/subscribed_apps``.
    Point every Meta host at it: their paths do not overlap.

    Mount ``app`` behind ``httpx2.ASGITransport`` or run it on loopback with ``serve()``.
    ``attempts`` counts every request to the Send endpoint; ``sends`` holds the successful ones.
    ``token_requests`` names every call to the other endpoints, in order (see ``fail_next``);
    ``subscriptions`` holds the IG user ids and page ids subscribed to webhooks.
    Scripted failures and hangs are consumed first in, first out, per endpoint. Nothing is logged.
    """

    def __init__(
        self,
        *,
        instagram_app_secret: str = "ig-app-secret",  # noqa: S107 - a fake's known secret
        facebook_app_secret: str = "fb-app-secret",  # noqa: S107
        code_exchange_shape: CodeExchangeShape = "flat",
    ) -> None:
        self.app = Starlette(routes=self._routes())
        self.sends: list[RecordedSend] = []
        self.attempts = 0
        self.token_requests: list[FakeEndpoint] = []
        self.subscriptions: set[str] = set()
        self.code_exchange_shape = code_exchange_shape
        self._instagram_app_secret = instagram_app_secret
        self._facebook_app_secret = facebook_app_secret
        self._scripts: dict[FakeEndpoint, deque[_GraphError | _Hang]] = {
            endpoint: deque() for endpoint in FAKE_ENDPOINTS
        }
        self._rejected_tokens: set[str] = set()
        self._hung_requests: set[asyncio.Future[None]] = set()
        self._accounts: dict[str, _InstagramAccount] = {}
        self._pages: dict[str, _Page] = {}
        self._codes: dict[Login, dict[str, _Code]] = {"instagram": {}, "facebook": {}}
        self._tokens: dict[str, _Grant] = {}
        self._issued = 0
        self._next_instagram_user: str | None = None
        self._decline_next = False

    def _routes(self) -> list[Route]:
        return [
            Route("/{version}/{account_id}/messages", self._handle_send, methods=["POST"]),
            Route("/oauth/authorize", self._instagram_authorize, methods=["GET"]),
            Route(
                "/oauth/access_token",
                self._json_endpoint("oauth_token", self._instagram_code_exchange),
                methods=["POST"],
            ),
            Route(
                "/access_token",
                self._json_endpoint("long_lived_token", self._instagram_long_lived_token),
                methods=["GET"],
            ),
            Route(
                "/refresh_access_token",
                self._json_endpoint("refresh", self._instagram_refresh),
                methods=["GET"],
            ),
            Route("/{version}/dialog/oauth", self._facebook_dialog, methods=["GET"]),
            Route("/{version}/oauth/access_token", self._facebook_access_token, methods=["GET"]),
            Route("/{version}/me", self._json_endpoint("me", self._me), methods=["GET"]),
            Route(
                "/{version}/me/accounts",
                self._json_endpoint("accounts", self._accounts_page),
                methods=["GET"],
            ),
            Route(
                "/{version}/{account}/subscribed_apps",
                self._json_endpoint("subscribe", self._subscribed_apps),
                methods=["POST", "DELETE"],
            ),
        ]

    def sends_to(self, recipient_id: str) -> list[RecordedSend]:
        """Successful sends addressed to ``recipient_id``, oldest first."""
        return [send for send in self.sends if send.recipient_id == recipient_id]

    def issued_secrets(self) -> list[str]:
        """Every token and authorization code this fake handed out: values that must never
        appear in a log, an audit row or a URL Frontdesk logs."""
        codes = [code for by_login in self._codes.values() for code in by_login]
        return [*self._tokens, *codes]

    def reset(self) -> None:
        """Forget sends, attempts, token requests, subscriptions, scripted failures and
        rejected tokens. Accounts, pages, and the codes and tokens issued so far stay."""
        self.sends.clear()
        self.attempts = 0
        self.token_requests.clear()
        self.subscriptions.clear()
        for script in self._scripts.values():
            script.clear()
        self._rejected_tokens.clear()

    def add_instagram_account(self, user_id: str, username: str) -> None:
        """An Instagram professional account that can log in; ``user_id`` is numeric, as Meta's."""
        if not (user_id.isascii() and user_id.isdigit()):
            raise ValueError("Instagram user ids are numeric strings")
        app_scoped_id = str(int(user_id) + APP_SCOPED_ID_OFFSET)
        self._accounts[user_id] = _InstagramAccount(username, app_scoped_id)

    def add_facebook_page(self, page_id: str, name: str, instagram_account_id: str | None) -> None:
        """A Page the Facebook user of the flow manages, optionally linked to an IG account."""
        self._pages[page_id] = _Page(name, instagram_account_id)

    def next_authorization(self, user_id: str) -> None:
        """Log in as this added account at the next Instagram authorize page."""
        self._next_instagram_user = self._instagram_user(user_id)

    def decline_next_authorization(self) -> None:
        """At the next authorize page (either login) the user clicks "Cancel"."""
        self._decline_next = True

    def issue_code(self, user_id: str | None = None, *, login: Login = "instagram") -> str:
        """An unused code, as if the browser had been through the authorize page.

        Instagram codes belong to ``user_id`` (default: the most recently added account);
        Facebook codes belong to the one Facebook user, so take no ``user_id``. Codes issued
        here are accepted with any ``redirect_uri``.
        """
        if login == "facebook":
            if user_id is not None:
                raise ValueError("Facebook codes belong to the one Facebook user; pass no user_id")
            return self._new_code("facebook", _Code(redirect_uri=None))
        return self._new_code("instagram", _Code(None, self._instagram_user(user_id)))

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        code: int = 2,
        message: str = UNEXPECTED_ERROR_MESSAGE,
        headers: dict[str, str] | None = None,
        error_subcode: int | None = None,
        endpoint: FakeEndpoint = "messages",
    ) -> None:
        """Answer the next ``count`` requests to ``endpoint`` with this Graph error.

        For "messages" only authenticated requests count. The others: "oauth_token" (both
        logins' code exchange), "long_lived_token" (both logins), "refresh", "me", "subscribe"
        (subscribe and unsubscribe, account or page) and "accounts" (``/me/accounts``).
        """
        self._script(endpoint).extend(
            _GraphError(status, code, message, error_subcode, headers=dict(headers or {}))
            for _ in range(count)
        )

    def hang_next(
        self, count: int = 1, *, seconds: float = 30.0, endpoint: FakeEndpoint = "messages"
    ) -> None:
        """Delay the next ``count`` requests to ``endpoint`` by ``seconds``, then handle them.

        Leaving ``serve()`` cuts the delay short, so a hung request never stalls shutdown.
        """
        self._script(endpoint).extend(_Hang(seconds) for _ in range(count))

    def reject_token(self, token: str) -> None:
        """Treat ``token`` as expired from now on (error 190, subcode 463) on every endpoint."""
        self._rejected_tokens.add(token)

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run ``app`` under uvicorn on ``host`` (IPv4) and yield its base URL.

        ``port=0`` picks a free port. On exit, hung requests are released and every request
        in flight is allowed to finish.
        """
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        server_task = asyncio.create_task(server.serve())
        try:
            await _wait_until_started(server, server_task)
            yield _base_url(server)
        finally:
            self._release_hung_requests()
            server.should_exit = True
            await server_task

    async def _handle_send(self, request: Request) -> JSONResponse:
        self.attempts += 1
        try:
            send = await self._accept(request)
        except _GraphError as error:
            return error.response()
        return JSONResponse({"recipient_id": send.recipient_id, "message_id": send.message_id})

    async def _accept(self, request: Request) -> RecordedSend:
        token = _header_token(request)
        await self._play_script("messages")
        if token in self._rejected_tokens:
            raise _session_expired()
        return self._record(request, token, await _read_send_request(request))

    def _script(self, endpoint: FakeEndpoint) -> deque[_GraphError | _Hang]:
        if endpoint not in self._scripts:
            raise ValueError(f"Unknown fake endpoint {endpoint!r}; one of {FAKE_ENDPOINTS}")
        return self._scripts[endpoint]

    async def _play_script(self, endpoint: FakeEndpoint) -> None:
        script = self._scripts[endpoint]
        if not script:
            return
        scripted = script.popleft()
        if isinstance(scripted, _GraphError):
            raise scripted
        await self._hang(scripted.seconds)

    async def _hang(self, seconds: float) -> None:
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hung_requests.add(released)
        try:
            await asyncio.wait({released}, timeout=seconds)
        finally:
            self._hung_requests.discard(released)

    def _release_hung_requests(self) -> None:
        for released in self._hung_requests:
            if not released.done():
                released.set_result(None)

    def _record(self, request: Request, token: str, send: _SendRequest) -> RecordedSend:
        recorded = RecordedSend(
            account_id=str(request.path_params["account_id"]),
            version=str(request.path_params["version"]),
            access_token=token,
            recipient_id=send.recipient_id,
            text=send.text,
            message_id=f"fake_mid_{len(self.sends) + 1}",
            body=send.body,
        )
        self.sends.append(recorded)
        return recorded

    def _json_endpoint(
        self, name: FakeEndpoint, answer: _Answer
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._answer(name, answer, request)

        return endpoint

    async def _answer(self, name: FakeEndpoint, answer: _Answer, request: Request) -> Response:
        self.token_requests.append(name)
        try:
            await self._play_script(name)
            return JSONResponse(await answer(request))
        except _GraphError as error:
            return error.response()

    async def _instagram_authorize(self, request: Request) -> Response:
        try:
            redirect_uri, state = _authorize_params(request, _instagram_oauth_error)
        except _GraphError as error:
            return error.response()
        if self._take_decline():
            return _redirect(redirect_uri, _declined(state))
        try:
            user_id = self._instagram_user(self._next_instagram_user)
        except LookupError as error:
            return _instagram_oauth_error(str(error)).response()
        self._next_instagram_user = None
        code = self._new_code("instagram", _Code(redirect_uri, user_id))
        return _redirect(redirect_uri, {"code": code, "state": state}, fragment="_")

    async def _facebook_dialog(self, request: Request) -> Response:
        try:
            redirect_uri, state = _authorize_params(request, _invalid_parameter)
        except _GraphError as error:
            return error.response()
        if self._take_decline():
            return _redirect(redirect_uri, _declined(state))
        code = self._new_code("facebook", _Code(redirect_uri))
        return _redirect(redirect_uri, {"code": code, "state": state})

    async def _instagram_code_exchange(self, request: Request) -> dict[str, object]:
        _, secret, grant_type, redirect_uri, code = _required(
            await _form(request),
            ("client_id", "client_secret", "grant_type", "redirect_uri", "code"),
            _instagram_oauth_error,
        )
        _expect_grant_type(grant_type, "authorization_code", _instagram_oauth_error)
        _check_secret(secret, self._instagram_app_secret, _instagram_oauth_error)
        user_id = self._redeem("instagram", code, redirect_uri, _instagram_oauth_error).user_id
        grant: dict[str, object] = {
            "access_token": self._issue("IGshort", _Grant("instagram_short", user_id)),
            "user_id": int(user_id),
            "permissions": INSTAGRAM_PERMISSIONS,
        }
        return {"data": [grant]} if self.code_exchange_shape == "data" else grant

    async def _instagram_long_lived_token(self, request: Request) -> dict[str, object]:
        grant_type, secret, token = _required(
            request.query_params, ("grant_type", "client_secret", "access_token")
        )
        _expect_grant_type(grant_type, "ig_exchange_token")
        _check_secret(secret, self._instagram_app_secret)
        user_id = self._grant(token, frozenset({"instagram_short"})).subject
        return _token_answer(self._issue("IGlong", _Grant("instagram_long", user_id)))

    async def _instagram_refresh(self, request: Request) -> dict[str, object]:
        grant_type, token = _required(request.query_params, ("grant_type", "access_token"))
        _expect_grant_type(grant_type, "ig_refresh_token")
        user_id = self._grant(token, frozenset({"instagram_long"})).subject
        return _token_answer(self._issue("IGlong", _Grant("instagram_long", user_id)))

    async def _facebook_access_token(self, request: Request) -> Response:
        if request.query_params.get("grant_type") == "fb_exchange_token":
            return await self._answer("long_lived_token", self._facebook_long_lived_token, request)
        return await self._answer("oauth_token", self._facebook_code_exchange, request)

    async def _facebook_code_exchange(self, request: Request) -> dict[str, object]:
        _, redirect_uri, secret, code = _required(
            request.query_params, ("client_id", "redirect_uri", "client_secret", "code")
        )
        _check_secret(secret, self._facebook_app_secret)
        self._redeem("facebook", code, redirect_uri, _invalid_parameter)
        return _token_answer(self._issue("EAAuser", _Grant("facebook_user", FACEBOOK_USER)))

    async def _facebook_long_lived_token(self, request: Request) -> dict[str, object]:
        _, secret, token = _required(
            request.query_params, ("client_id", "client_secret", "fb_exchange_token")
        )
        _check_secret(secret, self._facebook_app_secret)
        self._grant(token, frozenset({"facebook_user"}))
        return _token_answer(self._issue("EAAuserlong", _Grant("facebook_user", FACEBOOK_USER)))

    async def _me(self, request: Request) -> dict[str, object]:
        user_id = self._grant(_header_token(request), INSTAGRAM_TOKENS).subject
        account = self._accounts[user_id]
        answer: dict[str, object] = {"id": account.app_scoped_id}
        available = {"user_id": user_id, "username": account.username}
        return answer | {
            name: value for name, value in available.items() if name in _fields(request)
        }

    async def _subscribed_apps(self, request: Request) -> dict[str, object]:
        subject = self._grant(_header_token(request), SUBSCRIBER_TOKENS).subject
        account = str(request.path_params["account"])
        if account not in ("me", subject):
            raise _invalid_parameter(
                f"Unsupported {request.method.lower()} request. Object with ID '{account}' does "
                "not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation"
            )
        if request.method == "DELETE":
            self.subscriptions.discard(subject)
        else:
            _required(request.query_params, ("subscribed_fields",))
            self.subscriptions.add(subject)
        return {"success": True}

    async def _accounts_page(self, request: Request) -> dict[str, object]:
        token = _header_token(request)
        self._grant(token, frozenset({"facebook_user"}))
        start = _cursor_index(request.query_params.get("after"))
        page_ids = list(self._pages)[start : start + ACCOUNTS_PAGE_SIZE]
        fields = _fields(request)
        answer: dict[str, object] = {"data": [self._page_entry(pid, fields) for pid in page_ids]}
        end = start + len(page_ids)
        if page_ids:
            answer["paging"] = _paging(request, token, start, end, more=end < len(self._pages))
        return answer

    def _page_entry(self, page_id: str, fields: set[str]) -> dict[str, object]:
        page = self._pages[page_id]
        entry: dict[str, object] = {
            "id": page_id,
            "name": page.name,
            "access_token": self._issue(f"EAApage-{page_id}", _Grant("facebook_page", page_id)),
        }
        if page.instagram_account_id is not None and "instagram_business_account" in fields:
            entry["instagram_business_account"] = {"id": page.instagram_account_id}
        return entry

    def _instagram_user(self, user_id: str | None) -> str:
        if user_id is None:
            if not self._accounts:
                raise LookupError("Fake Graph API: call add_instagram_account() first")
            return next(reversed(self._accounts))
        if user_id not in self._accounts:
            raise LookupError(f"Fake Graph API: no Instagram account {user_id} was added")
        return user_id

    def _take_decline(self) -> bool:
        declined, self._decline_next = self._decline_next, False
        return declined

    def _new_code(self, login: Login, code: _Code) -> str:
        value = f"AQ{secrets.token_urlsafe(24)}"
        self._codes[login][value] = code
        return value

    def _redeem(self, login: Login, value: str, redirect_uri: str, error: ErrorFactory) -> _Code:
        code = self._codes[login].get(value)
        if code is None:
            raise error("Invalid authorization code")
        if code.used:
            raise error("This authorization code has been used")
        if code.redirect_uri not in (None, redirect_uri):
            raise error(
                "Error validating verification code. Please make sure your redirect_uri is "
                "identical to the one you used in the OAuth dialog request"
            )
        code.used = True
        return code

    def _issue(self, prefix: str, grant: _Grant) -> str:
        self._issued += 1
        token = f"{prefix}-{self._issued}"
        self._tokens[token] = grant
        return token

    def _grant(self, token: str, kinds: frozenset[_TokenKind]) -> _Grant:
        if token in self._rejected_tokens:
            raise _session_expired()
        grant = self._tokens.get(token)
        if grant is None:
            raise _unparseable_token()
        if grant.kind not in kinds:
            raise _invalid_parameter(f"Fake Graph API: a {grant.kind} token is not accepted here")
        return grant


def _header_token(request: Request) -> str:
    if "access_token" in request.query_params:
        raise _invalid_parameter(
            "Fake Graph API: access_token must be sent in the Authorization header, "
            "never in the URL"
        )
    return _bearer_token(request)


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unparseable_token()
    return token.strip()


def _required(
    params: Mapping[str, str], names: tuple[str, ...], error: ErrorFactory = _invalid_parameter
) -> list[str]:
    for name in names:
        if not params.get(name):
            raise error(f"Missing required parameter: {name}")
    return [params[name] for name in names]


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise _instagram_oauth_error("The request body must be form-encoded")
    body = (await request.body()).decode(errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _expect_grant_type(given: str, expected: str, error: ErrorFactory = _invalid_parameter) -> None:
    if given != expected:
        raise error(f"Unsupported grant_type {given!r}; expected {expected!r}")


def _check_secret(given: str, expected: str, error: ErrorFactory = _invalid_parameter) -> None:
    if given != expected:
        raise error("Error validating client secret.")


def _token_answer(token: str) -> dict[str, object]:
    return {"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_EXPIRES_IN}


def _fields(request: Request) -> set[str]:
    return set(request.query_params.get("fields", "").split(","))


def _cursor_index(after: str | None) -> int:
    if after is None:
        return 0
    if not (after.isascii() and after.isdigit()):
        raise _invalid_parameter("Invalid cursor")
    return int(after)


def _paging(request: Request, token: str, start: int, end: int, *, more: bool) -> dict[str, object]:
    """Meta's paging: cursors always; ``next`` (which carries the token!) only if more follow."""
    paging: dict[str, object] = {"cursors": {"before": str(start), "after": str(end)}}
    if more:
        query = {**request.query_params, "access_token": token, "after": str(end)}
        paging["next"] = str(request.url.replace(query=urlencode(query)))
    return paging


def _authorize_params(request: Request, error: ErrorFactory) -> tuple[str, str]:
    _, redirect_uri, state = _required(
        request.query_params, ("client_id", "redirect_uri", "state"), error
    )
    return redirect_uri, state


def _declined(state: str) -> dict[str, str]:
    return {
        "error": "access_denied",
        "error_reason": "user_denied",
        "error_description": DECLINED_DESCRIPTION,
        "state": state,
    }


def _redirect(uri: str, params: Mapping[str, str], *, fragment: str = "") -> RedirectResponse:
    """302 to ``uri`` with ``params`` added to whatever query it already has."""
    parts = urlsplit(uri)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return RedirectResponse(urlunsplit(parts._replace(query=query, fragment=fragment)), 302)


async def _read_send_request(request: Request) -> _SendRequest:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise _invalid_parameter("The request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _invalid_parameter("The request body must be a JSON object")
    recipient_id = _string_param(body, "recipient", "id")
    text = _string_param(body, "message", "text")
    if len(text) > MAX_TEXT_LENGTH:
        raise _invalid_parameter(
            f"Length of param message[text] must be less than or equal to {MAX_TEXT_LENGTH}"
        )
    return _SendRequest(recipient_id=recipient_id, text=text, body=body)


def _string_param(body: dict[str, object], outer: str, inner: str) -> str:
    container = body.get(outer)
    value = container.get(inner) if isinstance(container, dict) else None
    if not isinstance(value, str):
        raise _invalid_parameter(f"Param {outer}[{inner}] must be a string")
    return value


async def _wait_until_started(server: uvicorn.Server, server_task: asyncio.Task[None]) -> None:
    while not server.started:
        if server_task.done():
            raise RuntimeError("The fake Graph API server stopped before it started listening")
        await asyncio.sleep(0.01)


def _base_url(server: uvicorn.Server) -> str:
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"
