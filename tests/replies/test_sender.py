"""The reply sender: it stops when its lease is lost, holds the rest when the token dies, and
records rather than resends a part Meta accepted while the database was away."""

from __future__ import annotations

import dataclasses
import sqlite3

import httpx2
import pytest
import stamina
from sqlalchemy import select
from sqlalchemy.engine import make_url
from starlette.requests import Request
from starlette.responses import JSONResponse

from frontdesk.clinic.connections import mark_needs_reauth
from frontdesk.clinic.conversations import OutboundMessage, open_conversation, plan_replies
from frontdesk.db.engine import DatabaseUnavailableError
from frontdesk.db.tables import messages, webhook_events
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.graph.client import GraphClient
from frontdesk.metrics import Metrics
from frontdesk.replies.sender import (
    LeaseLostError,
    ReplySender,
    ReplyThread,
    record_patience_within_lease,
)
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import add_linked_doctor, post_delivery, recent_ms, unscoped

PAGE = "17841455512340001"
PATIENT = "7321554890123456"


async def planned_parts(
    runtime: Runtime, client: httpx2.AsyncClient, doctor_id: str, parts: list[str]
) -> tuple[str, list[OutboundMessage]]:
    """Reply parts planned for a stored (not yet handled) inbound event."""
    delivery = payloads.dm_delivery(page_id=PAGE, sender=PATIENT, text="hi", timestamp=recent_ms())
    await post_delivery(client, delivery)
    async with unscoped(runtime) as connection:
        event_id = (await connection.execute(select(webhook_events.c.id))).scalar_one()
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        conversation = await open_conversation(
            connection, doctor_id=doctor_id, patient_platform_id=PATIENT, now=runtime.clock.now()
        )
        await plan_replies(
            connection,
            runtime.keyring,
            doctor_id=doctor_id,
            conversation_id=conversation.id,
            event_id=event_id,
            parts=parts,
            now=runtime.clock.now(),
        )
    async with unscoped(runtime) as connection:
        rows = await connection.execute(select(messages).order_by(messages.c.reply_part))
        stored = [
            OutboundMessage(
                id=row.id, reply_part=row.reply_part, text="part", send_status=row.send_status
            )
            for row in rows
        ]
    return conversation.id, stored


async def test_a_sender_that_lost_its_lease_sends_nothing_more(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    conversation_id, parts = await planned_parts(runtime, client, doctor.id, ["one", "two"])
    leases = iter([True, False])

    async def keep_lease() -> bool:
        return next(leases)

    thread = ReplyThread(
        doctor_id=doctor.id,
        conversation_id=conversation_id,
        recipient_id=PATIENT,
        correlation_id=None,
        keep_lease=keep_lease,
    )
    with pytest.raises(LeaseLostError):
        await runtime.handler_context.sender.send_messages(thread, parts)

    assert len(fake_graph.sends) == 1


async def test_a_rejected_token_holds_this_part_and_every_part_after_it(
    runtime: Runtime, client: httpx2.AsyncClient, fake_graph: FakeGraphApi
) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    conversation_id, parts = await planned_parts(
        runtime, client, doctor.id, ["one", "two", "three"]
    )
    fake_graph.reject_token("token-a")
    thread = ReplyThread(
        doctor_id=doctor.id,
        conversation_id=conversation_id,
        recipient_id=PATIENT,
        correlation_id=None,
    )

    with pytest.raises(Exception, match="token_rejected"):
        await runtime.handler_context.sender.send_messages(thread, parts)

    async with unscoped(runtime) as connection:
        statuses = list((await connection.execute(select(messages.c.send_status))).scalars())
    assert statuses == ["held", "held", "held"]


class LocksTheDatabaseWhenItAccepts(FakeGraphApi):
    """Accepts a send, then (once armed) holds SQLite's write lock so that recording it fails."""

    def __init__(self, database_path: str) -> None:
        super().__init__()
        self._database_path = database_path
        self.armed = False
        self.lock: sqlite3.Connection | None = None

    async def _handle_send(self, request: Request) -> JSONResponse:
        response = await super()._handle_send(request)
        if self.armed and self.lock is None:
            self.lock = sqlite3.connect(self._database_path, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")
        return response

    def release(self) -> None:
        assert self.lock is not None
        self.lock.execute("ROLLBACK")
        self.lock.close()
        self.lock = None
        self.armed = False


@dataclasses.dataclass
class LockedSend:
    """A sender whose Graph API takes SQLite's write lock as it accepts, and the parts it owes."""

    sender: ReplySender
    fake: LocksTheDatabaseWhenItAccepts
    thread: ReplyThread
    parts: list[OutboundMessage]
    metrics: Metrics

    async def send_while_the_database_locks(self, parts: list[OutboundMessage]) -> None:
        self.fake.armed = True
        with stamina.set_testing(True, attempts=1), pytest.raises(DatabaseUnavailableError):
            await self.sender.send_messages(self.thread, parts)
        self.fake.release()

    def unrecorded(self) -> float | None:
        """The gauge of parts Meta accepted that the sender still has to record."""
        return self.metrics.registry.get_sample_value("frontdesk_graph_sends_accepted_unrecorded")


async def locked_send(
    runtime: Runtime, client: httpx2.AsyncClient, texts: list[str], *, remember_at_most: int = 100
) -> LockedSend:
    url = make_url(runtime.settings.resolved_database_url())
    if url.get_backend_name() != "sqlite":
        pytest.skip("holds SQLite's write lock; PostgreSQL's outage is tests/reliability")
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE, token="token-a")
    conversation_id, parts = await planned_parts(runtime, client, doctor.id, texts)
    fake = LocksTheDatabaseWhenItAccepts(str(url.database))
    graph = GraphClient(
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app)),
        instagram_base_url="http://graph.instagram.test",
        facebook_base_url="http://graph.facebook.test",
        version=runtime.settings.graph_api_version,
    )
    metrics = Metrics()
    sender = ReplySender(
        runtime.engine,
        runtime.keyring,
        graph,
        runtime.clock,
        metrics,
        remember_accepted_at_most=remember_at_most,
    )
    thread = ReplyThread(
        doctor_id=doctor.id,
        conversation_id=conversation_id,
        recipient_id=PATIENT,
        correlation_id=None,
    )
    return LockedSend(sender, fake, thread, parts, metrics)


async def test_a_part_meta_accepted_but_not_recorded_is_recorded_not_resent(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    send = await locked_send(runtime, client, ["one"])
    await send.send_while_the_database_locks(send.parts)
    assert send.unrecorded() == 1
    async with doctor_transaction(runtime.engine, send.thread.doctor_id) as connection:
        # Meanwhile the token died: a part Meta already has is recorded all the same.
        await mark_needs_reauth(
            connection,
            doctor_id=send.thread.doctor_id,
            now=runtime.clock.now(),
            correlation_id=None,
        )

    summary = await send.sender.send_messages(send.thread, send.parts)

    assert (summary.sent, summary.held, summary.already_sent) == (0, 0, 1)
    assert len(send.fake.sends) == 1
    async with unscoped(runtime) as connection:
        row = (await connection.execute(select(messages.c.send_status, messages.c.mid))).one()
    assert row == ("sent", send.fake.sends[0].message_id)
    assert send.unrecorded() == 0


async def test_a_remembered_part_another_process_recorded_is_forgotten(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    send = await locked_send(runtime, client, ["one"])
    await send.send_while_the_database_locks(send.parts)
    recorded_elsewhere = [dataclasses.replace(part, send_status="sent") for part in send.parts]

    summary = await send.sender.send_messages(send.thread, recorded_elsewhere)

    assert (summary.sent, summary.already_sent) == (0, 1)
    assert send.unrecorded() == 0
    assert len(send.fake.sends) == 1


async def test_the_oldest_remembered_part_is_forgotten_when_the_memory_is_full(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    send = await locked_send(runtime, client, ["one", "two"], remember_at_most=1)
    for part in send.parts:
        await send.send_while_the_database_locks([part])
    assert send.unrecorded() == 1

    summary = await send.sender.send_messages(send.thread, send.parts)

    # Part one was forgotten, so it goes out again (at least once); part two is only recorded.
    assert (summary.sent, summary.already_sent) == (1, 1)
    assert len(send.fake.sends) == 3
    assert send.unrecorded() == 0


@pytest.mark.parametrize(
    ("lease", "graph_timeout", "patience"),
    # lease − graph timeout − 5 s (the recording write's longest wait) − 0.5 s (one pause)
    [(60, 10, 30.0), (30, 10, 14.5), (8, 1, 1.5), (15, 10, 0.0)],
)
def test_recording_patience_ends_before_a_lease_renewed_ahead_of_the_send_does(
    lease: int, graph_timeout: float, patience: float
) -> None:
    assert (
        record_patience_within_lease(lease_seconds=lease, graph_timeout_seconds=graph_timeout)
        == patience
    )
