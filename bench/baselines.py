"""The three reference endpoints Frontdesk's intake is measured against.

(a) `bare`: plain ASGI, reads the body, answers 200.
(b) `verify`: plain ASGI, reads the body, checks X-Hub-Signature-256, parses the JSON, answers;
    stores nothing.
(c) `fastapi_commit`: a FastAPI route that verifies, parses and commits one transaction per
    request (the raw body into one table), through the same engine settings Frontdesk uses.

Run one with `python -m bench.baselines --app NAME --port P`; it is served by uvicorn with the
same options `frontdesk serve` uses. Every app answers GET with 200 (the readiness probe).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy import create_engine as create_sync_engine
from starlette.types import Receive, Scope, Send

from frontdesk.db.engine import create_engine, sync_url, transaction

OK_BODY = b'{"ok":true}'
OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]
APPS = ("bare", "verify", "fastapi_commit")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _signature_matches(body: bytes, header: bytes | None, secret: bytes) -> bool:
    if header is None or not header.startswith(b"sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header[7:].lower())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class BareEndpoint:
    """(a) Read the body, answer 200."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["method"] == "POST":
            await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": OK_HEADERS})
        await send({"type": "http.response.body", "body": OK_BODY})


class VerifyEndpoint:
    """(b) Read, verify the signature, parse the JSON, answer; nothing is stored."""

    def __init__(self, app_secret: str) -> None:
        self._secret = app_secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 200, OK_BODY)
            return
        body = await _read_body(receive)
        headers = dict(scope["headers"])
        if not _signature_matches(body, headers.get(b"x-hub-signature-256"), self._secret):
            await _answer(send, 401, b'{"error":"invalid_signature"}')
            return
        try:
            json.loads(body)
        except ValueError:
            await _answer(send, 400, b'{"error":"invalid_json"}')
            return
        await _answer(send, 200, OK_BODY)


def fastapi_commit_app(app_secret: str, database_url: str) -> FastAPI:
    """(c) FastAPI: verify, parse, commit one transaction per request."""
    metadata = MetaData()
    deliveries = Table(
        "bench_deliveries",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("body_sha256", String(64), nullable=False),
        Column("body", LargeBinary, nullable=False),
    )
    setup = create_sync_engine(sync_url(database_url))
    metadata.create_all(setup)
    setup.dispose()
    engine = create_engine(database_url, busy_timeout_seconds=2.0)
    secret = app_secret.encode()
    api = FastAPI()

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/webhooks/instagram")
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        header = request.headers.get("x-hub-signature-256")
        if not _signature_matches(body, header.encode() if header else None, secret):
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        try:
            json.loads(body)
        except ValueError:
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        async with transaction(engine) as connection:
            await connection.execute(
                deliveries.insert().values(
                    received_at=datetime.now(UTC),
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body=body,
                )
            )
        return JSONResponse({"ok": True})

    return api


def build(app: str, *, app_secret: str, database_url: str | None) -> Any:
    if app == "bare":
        return BareEndpoint()
    if app == "verify":
        return VerifyEndpoint(app_secret)
    if app == "fastapi_commit":
        if not database_url:
            raise SystemExit("fastapi_commit needs --database-url")
        return fastapi_commit_app(app_secret, database_url)
    raise SystemExit(f"unknown app {app!r}; one of {APPS}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("--app", choices=APPS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    application = build(args.app, app_secret=args.app_secret, database_url=args.database_url)
    # The same options as `frontdesk serve` (frontdesk/cli.py: _serve).
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
