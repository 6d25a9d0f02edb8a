"""One running instance wired from settings: database, keyring, Graph, intake, queue, worker."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.clinic.connect import ConnectService
from frontdesk.clinic.tokens import refresh_expiring_tokens
from frontdesk.clock import Clock, SystemClock
from frontdesk.config import Settings
from frontdesk.crypto import Keyring
from frontdesk.db.engine import create_engine, transaction
from frontdesk.graph.client import GraphClient
from frontdesk.graph.oauth import MetaOAuthClient, MetaOAuthSettings
from frontdesk.handlers.context import FallbackReply, HandlerContext
from frontdesk.handlers.dispatch import handle_event
from frontdesk.inbox.queue import ClaimedEvent, EventOutcome, EventQueue, purge_expired_payloads
from frontdesk.inbox.worker import MaintenanceJob, Worker
from frontdesk.logs import install_retry_logging, log_loop_exception
from frontdesk.metrics import Metrics
from frontdesk.replies.sender import (
    ReplySender,
    least_lease_for_a_send,
    record_patience_within_lease,
)
from frontdesk.webhooks.intake import IntakeWriter


class SettingsError(ValueError):
    """The settings are incomplete for what was asked."""


def check_settings_agree(settings: Settings) -> None:
    """What no single setting can say alone; raises SettingsError, naming settings only."""
    least = least_lease_for_a_send(graph_timeout_seconds=settings.graph_timeout_seconds)
    if settings.lease_seconds <= least:
        # The lease is renewed before each reply part; a send and its recording must fit in it.
        raise SettingsError(
            "FRONTDESK_LEASE_SECONDS must be longer than FRONTDESK_GRAPH_TIMEOUT_SECONDS plus "
            f"{least - settings.graph_timeout_seconds:g} s (the longest wait of the write that "
            "records a send)"
        )


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    keyring: Keyring
    clock: Clock
    metrics: Metrics
    http: httpx2.AsyncClient
    graph: GraphClient
    oauth: MetaOAuthClient
    connect: ConnectService
    intake: IntakeWriter
    queue: EventQueue
    handler_context: HandlerContext
    worker: Worker
    _worker_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        graph_transport: httpx2.AsyncBaseTransport | None = None,
        worker_id: str | None = None,
    ) -> Runtime:
        if not settings.encryption_keys:
            raise SettingsError("FRONTDESK_ENCRYPTION_KEYS is not set")
        check_settings_agree(settings)
        clock = clock or SystemClock()
        # Whoever builds a runtime without configure_logging still gets retries logged safely.
        install_retry_logging()
        # The engine waits for a lock or a connection as long as any worker step may; intake
        # keeps its own, shorter deadline (FRONTDESK_INTAKE_DB_TIMEOUT_SECONDS) for its 503.
        engine = create_engine(settings.resolved_database_url(), role=settings.database_role)
        keyring = Keyring.from_specs(settings.encryption_keys)
        metrics = Metrics()
        http = httpx2.AsyncClient(
            transport=graph_transport,
            timeout=settings.graph_timeout_seconds,
            follow_redirects=False,
        )
        graph = GraphClient(
            http,
            instagram_base_url=settings.graph_api_url,
            facebook_base_url=settings.facebook_graph_api_url,
            version=settings.graph_api_version,
            total_timeout=settings.graph_timeout_seconds,
        )
        oauth = MetaOAuthClient(
            http,
            MetaOAuthSettings(
                instagram_app_id=settings.instagram_app_id,
                instagram_app_secret=settings.instagram_app_secret,
                facebook_app_id=settings.facebook_app_id,
                facebook_app_secret=settings.facebook_app_secret,
                instagram_authorize_url=settings.instagram_authorize_url,
                instagram_oauth_url=settings.instagram_oauth_url,
                graph_api_url=settings.graph_api_url,
                facebook_authorize_url=settings.facebook_authorize_url,
                facebook_graph_api_url=settings.facebook_graph_api_url,
                version=settings.graph_api_version,
            ),
            clock,
        )
        connect = ConnectService(
            engine,
            keyring,
            oauth,
            clock,
            redirect_uri=f"{settings.public_url.rstrip('/')}/api/v1/instagram/callback",
        )
        queue = EventQueue(
            engine,
            keyring,
            clock,
            worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
            lease_seconds=settings.lease_seconds,
            retry_delays=settings.retry_delays,
        )
        fallback = (
            FallbackReply(settings.fallback_reply_text, settings.fallback_access_token)
            if settings.fallback_reply_enabled
            else None
        )
        record_patience = record_patience_within_lease(
            lease_seconds=settings.lease_seconds,
            graph_timeout_seconds=settings.graph_timeout_seconds,
        )
        # Before each reply part the lease must outlast one send and the recording of it.
        send_needs = timedelta(
            seconds=least_lease_for_a_send(graph_timeout_seconds=settings.graph_timeout_seconds)
            + record_patience
        )
        context = HandlerContext(
            engine=engine,
            keyring=keyring,
            clock=clock,
            graph=graph,
            sender=ReplySender(
                engine, keyring, graph, clock, metrics, record_patience_seconds=record_patience
            ),
            fallback_reply=fallback,
            keep_lease=partial(queue.keep_lease, needed=send_needs),
        )

        async def handle(event: ClaimedEvent) -> EventOutcome:
            return await handle_event(context, event)

        retention = timedelta(days=settings.retention_days)

        async def purge() -> int:
            async with transaction(engine) as connection:
                return await purge_expired_payloads(
                    connection, now=clock.now(), retention=retention
                )

        async def refresh_tokens() -> int:
            return await refresh_expiring_tokens(engine, keyring, oauth, clock)

        worker = Worker(
            queue,
            handle,
            clock=clock,
            metrics=metrics,
            concurrency=settings.worker_concurrency,
            poll_seconds=settings.worker_poll_seconds,
            maintenance=[
                MaintenanceJob("retention", timedelta(hours=1), purge),
                MaintenanceJob("token_refresh", timedelta(hours=6), refresh_tokens),
            ],
        )
        intake = IntakeWriter(
            engine,
            keyring,
            clock,
            timeout=settings.intake_db_timeout_seconds,
            on_commit=worker.wake,
        )
        return cls(
            settings=settings,
            engine=engine,
            keyring=keyring,
            clock=clock,
            metrics=metrics,
            http=http,
            graph=graph,
            oauth=oauth,
            connect=connect,
            intake=intake,
            queue=queue,
            handler_context=context,
            worker=worker,
        )

    async def start(self, *, run_worker: bool) -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_exception)
        await self.intake.start()
        if run_worker and self._worker_task is None:
            self._worker_task = asyncio.create_task(self.worker.run(), name="worker")

    async def stop(self) -> None:
        if self._worker_task is not None:
            self.worker.stop()
            await self._worker_task
            self._worker_task = None
        await self.intake.stop()
        await self.http.aclose()
        await self.engine.dispose()
