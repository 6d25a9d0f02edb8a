"""The ASGI application: the webhook's lean endpoint in front, the framework for everything else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontdesk.api import auth as auth_api
from frontdesk.api import inbox as inbox_api
from frontdesk.api import instagram as instagram_api
from frontdesk.api import operator as operator_api
from frontdesk.api.errors import ErrorResponse, RejectNulMiddleware, install_error_handlers
from frontdesk.db.engine import DatabaseUnavailableError, transaction
from frontdesk.db.migrate import is_at_head
from frontdesk.inbox.health import count_by_status, oldest_queued_at
from frontdesk.inbox.queue import FINAL_STATUSES, OPEN_STATUSES
from frontdesk.logs import bind_correlation_id, clear_context
from frontdesk.runtime import Runtime
from frontdesk.web.pages import install_page_handlers, web_routers
from frontdesk.web.templating import STATIC_DIR
from frontdesk.webhooks.endpoint import InstagramWebhookEndpoint

WEBHOOK_PATH = "/webhooks/instagram"


class FrontdeskApp:
    """Routes the webhook path straight to its endpoint; every other request goes to FastAPI."""

    def __init__(self, api: FastAPI, webhook: InstagramWebhookEndpoint) -> None:
        self.api = api
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == WEBHOOK_PATH:
            await self.webhook(scope, receive, send)
            return
        await self.api(scope, receive, send)


def create_app(runtime: Runtime, *, run_worker: bool, manage_runtime: bool = True) -> FrontdeskApp:
    """`manage_runtime` starts and stops the runtime with the server's lifespan."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start(run_worker=run_worker)
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.stop()

    api = FastAPI(
        title="Frontdesk",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse, "description": "Malformed request body"},
            422: {"model": ErrorResponse},
        },
    )
    api.state.runtime = runtime
    install_error_handlers(api)
    api.add_middleware(RejectNulMiddleware)
    api.add_middleware(CorrelationIdMiddleware)
    routers = (auth_api.router, inbox_api.router, instagram_api.router, operator_api.router)
    for router in (*routers, *web_routers()):
        api.include_router(router)
    install_page_handlers(api)
    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_operations_routes(api, runtime)
    webhook = InstagramWebhookEndpoint(
        writer=runtime.intake,
        app_secrets=runtime.settings.app_secrets,
        verify_token=runtime.settings.verify_token,
        max_body_bytes=runtime.settings.max_body_bytes,
        metrics=runtime.metrics,
        body_timeout_seconds=runtime.settings.body_timeout_seconds,
    )
    return FrontdeskApp(api, webhook)


class CorrelationIdMiddleware:
    """Give every API request a correlation id: on request.state, in logs, in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = uuid.uuid4().hex
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        bind_correlation_id(correlation_id)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-correlation-id"] = correlation_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            clear_context()


def _add_operations_routes(api: FastAPI, runtime: Runtime) -> None:
    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up (says nothing about the database)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready when the database answers and its schema is at the newest migration."""
        try:
            async with transaction(runtime.engine) as connection:
                await connection.execute(text("SELECT 1"))
            at_head = await is_at_head(runtime.engine)
        except (DatabaseUnavailableError, OSError):
            return JSONResponse({"status": "database_unavailable"}, status_code=503)
        if not at_head:
            return JSONResponse({"status": "migrations_pending"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @api.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text format; queue gauges are read from the database now."""
        with suppress(DatabaseUnavailableError):
            await _refresh_queue_gauges(runtime)
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


async def _refresh_queue_gauges(runtime: Runtime) -> None:
    async with transaction(runtime.engine) as connection:
        by_status = await count_by_status(connection)
        oldest = await oldest_queued_at(connection)
    for status in (*OPEN_STATUSES, *FINAL_STATUSES):
        runtime.metrics.events_by_status.labels(status).set(by_status.get(status, 0))
    runtime.metrics.queue_depth.set(sum(by_status.get(status, 0) for status in OPEN_STATUSES))
    age = (runtime.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    runtime.metrics.oldest_queued_age.set(max(0.0, age))
