"""Fake Meta Graph API Send endpoint that speaks real HTTP and can be scripted to fail."""

import asyncio
import contextlib
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_TEXT_LENGTH = 1000
UNEXPECTED_ERROR_MESSAGE = "An unexpected error has occurred. Please retry your request later."


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


def _invalid_parameter(message: str) -> _GraphError:
    return _GraphError(status=400, code=100, message=message)


@dataclass(frozen=True)
class _Hang:
    """A scripted delay before the request is handled normally."""

    seconds: float


@dataclass(frozen=True)
class _SendRequest:
    recipient_id: str
    text: str
    body: dict[str, object]


class FakeGraphApi:
    """In-memory stand-in for ``POST /{version}/{account_id}/messages``.

    Mount ``app`` behind ``httpx2.ASGITransport`` or run it on loopback with ``serve()``.
    ``attempts`` counts every request to the endpoint; ``sends`` holds the successful ones.
    Scripted failures and hangs are consumed first in, first out. Nothing is logged.
    """

    def __init__(self) -> None:
        self.app = Starlette(
            routes=[Route("/{version}/{account_id}/messages", self._handle_send, methods=["POST"])]
        )
        self.sends: list[RecordedSend] = []
        self.attempts = 0
        self._script: deque[_GraphError | _Hang] = deque()
        self._rejected_tokens: set[str] = set()
        self._hung_requests: set[asyncio.Future[None]] = set()

    def sends_to(self, recipient_id: str) -> list[RecordedSend]:
        """Successful sends addressed to ``recipient_id``, oldest first."""
        return [send for send in self.sends if send.recipient_id == recipient_id]

    def reset(self) -> None:
        """Forget sends, attempts, scripted failures and rejected tokens."""
        self.sends.clear()
        self.attempts = 0
        self._script.clear()
        self._rejected_tokens.clear()

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        code: int = 2,
        message: str = UNEXPECTED_ERROR_MESSAGE,
        headers: dict[str, str] | None = None,
        error_subcode: int | None = None,
    ) -> None:
        """Answer the next ``count`` authenticated requests with this Graph error."""
        self._script.extend(
            _GraphError(status, code, message, error_subcode, headers=dict(headers or {}))
            for _ in range(count)
        )

    def hang_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """Delay the next ``count`` authenticated requests by ``seconds``, then handle them.

        Leaving ``serve()`` cuts the delay short, so a hung request never stalls shutdown.
        """
        self._script.extend(_Hang(seconds) for _ in range(count))

    def reject_token(self, token: str) -> None:
        """Treat ``token`` as expired from now on (error 190, subcode 463)."""
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
        if "access_token" in request.query_params:
            raise _invalid_parameter(
                "Fake Graph API: access_token must be sent in the Authorization header, "
                "never in the URL"
            )
        token = _bearer_token(request)
        await self._play_script()
        if token in self._rejected_tokens:
            raise _GraphError(
                status=400,
                code=190,
                message="Error validating access token: Session has expired",
                error_subcode=463,
            )
        return self._record(request, token, await _read_send_request(request))

    async def _play_script(self) -> None:
        if not self._script:
            return
        scripted = self._script.popleft()
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


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _GraphError(
            status=400, code=190, message="Invalid OAuth access token - Cannot parse access token"
        )
    return token.strip()


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
