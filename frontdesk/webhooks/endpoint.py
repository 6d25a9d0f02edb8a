"""The webhook's HTTP endpoint, plain ASGI as it is the hot path: verify, split, store, answer."""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope, Send

from frontdesk.db.engine import DatabaseUnavailableError
from frontdesk.logs import get_logger
from frontdesk.metrics import Metrics
from frontdesk.webhooks.intake import IntakeWriter
from frontdesk.webhooks.signature import signature_is_valid
from frontdesk.webhooks.split import PayloadNotJsonError, parse_json, split_delivery

log = get_logger(__name__)

RETRY_AFTER_SECONDS = "5"


class _BodyTooLargeError(Exception):
    pass


class _ClientGoneError(Exception):
    pass


class InstagramWebhookEndpoint:
    """GET answers Meta's verification handshake; POST takes a delivery."""

    def __init__(
        self,
        *,
        writer: IntakeWriter,
        app_secrets: Sequence[str],
        verify_token: str,
        max_body_bytes: int,
        metrics: Metrics,
        body_timeout_seconds: float = 10.0,
    ) -> None:
        self._writer = writer
        self._app_secrets = [secret.encode() for secret in app_secrets]
        self._verify_token = verify_token.encode()
        self._max_body_bytes = max_body_bytes
        self._body_timeout = body_timeout_seconds
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        correlation_id = uuid.uuid4().hex
        method = scope["method"]
        if method == "POST":
            status, body, headers = await self._take_delivery(scope, receive, correlation_id)
        elif method == "GET":
            status, body, headers = self._verify_subscription(scope)
        else:
            status, body, headers = _error(
                405, "method_not_allowed", "use GET or POST", correlation_id
            )
            headers.append((b"allow", b"GET, POST"))
        headers.append((b"x-correlation-id", correlation_id.encode()))
        await _respond(send, status, body, headers)

    def _verify_subscription(self, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        mode = query.get("hub.mode", [""])[0]
        token = query.get("hub.verify_token", [""])[0].encode()
        challenge = query.get("hub.challenge", [""])[0]
        token_matches = bool(self._verify_token) and hmac.compare_digest(token, self._verify_token)
        if mode != "subscribe" or not token_matches:
            return 403, b"forbidden", [(b"content-type", b"text/plain; charset=utf-8")]
        return 200, challenge.encode(), [(b"content-type", b"text/plain; charset=utf-8")]

    async def _take_delivery(
        self, scope: Scope, receive: Receive, correlation_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        headers = _headers(scope)
        try:
            async with asyncio.timeout(self._body_timeout):
                body = await self._read_body(headers, receive)
        except TimeoutError:
            self._metrics.deliveries.labels("too_slow").inc()
            return _error(408, "request_timeout", "the body arrived too slowly", correlation_id)
        except _BodyTooLargeError:
            self._metrics.deliveries.labels("too_large").inc()
            return _error(413, "payload_too_large", "body exceeds the size limit", correlation_id)
        except _ClientGoneError:
            return _error(
                400, "client_disconnected", "the request body did not arrive", correlation_id
            )
        signature = headers.get(b"x-hub-signature-256")
        decoded = signature.decode("latin-1") if signature is not None else None
        if not signature_is_valid(body, decoded, self._app_secrets):
            self._metrics.signature_failures.inc()
            self._metrics.deliveries.labels("bad_signature").inc()
            log.info("webhook_signature_rejected", correlation_id=correlation_id, bytes=len(body))
            return _error(
                401, "invalid_signature", "X-Hub-Signature-256 does not match", correlation_id
            )
        try:
            document = parse_json(body)
        except PayloadNotJsonError:
            self._metrics.deliveries.labels("not_json").inc()
            return _error(400, "invalid_json", "body is not JSON", correlation_id)
        split = split_delivery(document)
        try:
            result = await self._writer.store(body, split, correlation_id)
        except DatabaseUnavailableError:
            self._metrics.deliveries.labels("unavailable").inc()
            status, payload, extra = _error(
                503, "database_unavailable", "try again shortly", correlation_id
            )
            extra.append((b"retry-after", RETRY_AFTER_SECONDS.encode()))
            return status, payload, extra
        self._metrics.deliveries.labels("accepted" if split.recognized else "unrecognized").inc()
        self._metrics.events_received.inc(result.events)
        self._metrics.duplicate_events.inc(result.duplicates)
        answer = {"events": result.events, "duplicates": result.duplicates}
        return 200, json.dumps(answer).encode(), [(b"content-type", b"application/json")]

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise _BodyTooLargeError
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _error(
    status: int, code: str, message: str, correlation_id: str
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    body = {"error": {"code": code, "message": message, "correlation_id": correlation_id}}
    return status, json.dumps(body).encode(), [(b"content-type", b"application/json")]


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
