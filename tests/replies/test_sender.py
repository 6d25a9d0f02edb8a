"""The reply sender: it stops when its lease is lost, and holds the rest when the token dies."""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import select

from frontdesk.clinic.conversations import OutboundMessage, open_conversation, plan_replies
from frontdesk.db.tables import messages, webhook_events
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.replies.sender import LeaseLostError, ReplyThread
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
