"""Send the replies planned for an inbound event with the doctor's own token, each part once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.clinic.connections import (
    ACTIVE,
    find_connection,
    load_access_token,
    mark_needs_reauth,
    touch_connection,
)
from frontdesk.clinic.conversations import mark_reply_sent, mark_reply_unsent, replies_for_event
from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.errors import PermanentError, TransientError
from frontdesk.graph.client import GraphClient, SendTarget
from frontdesk.graph.errors import TokenRejectedError
from frontdesk.metrics import Metrics

SENT = "sent"
PENDING = "pending"
FAILED = "failed"
HELD = "held"


@dataclass(frozen=True)
class SendSummary:
    sent: int
    held: int
    already_sent: int


@dataclass(frozen=True)
class ReplyThread:
    doctor_id: str
    event_id: int
    conversation_id: str
    recipient_id: str
    correlation_id: str | None


class ReplySender:
    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        graph: GraphClient,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._graph = graph
        self._clock = clock
        self._metrics = metrics

    async def send_replies(self, thread: ReplyThread) -> SendSummary:
        """Raises TransientError to retry the rest later, PermanentError when a part is refused."""
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            replies = await replies_for_event(
                connection, self._keyring, doctor_id=thread.doctor_id, event_id=thread.event_id
            )
            link = await find_connection(connection, thread.doctor_id)
            token = await load_access_token(connection, self._keyring, doctor_id=thread.doctor_id)
        unsent = [reply for reply in replies if reply.send_status != SENT]
        if not unsent:
            return SendSummary(sent=0, held=0, already_sent=len(replies))
        if link is None or link.status != ACTIVE or token is None:
            await self._hold(thread, [reply.id for reply in unsent], "connection_not_active")
            return SendSummary(sent=0, held=len(unsent), already_sent=len(replies) - len(unsent))
        for reply in unsent:
            await self._send_one(thread, reply.id, reply.text, link.send_target, token)
        return SendSummary(sent=len(unsent), held=0, already_sent=len(replies) - len(unsent))

    async def _send_one(
        self, thread: ReplyThread, message_id: str, text: str, target: SendTarget, token: str
    ) -> None:
        try:
            graph_message_id = await self._graph.send_text(
                target, recipient_id=thread.recipient_id, text=text, access_token=token
            )
        except TokenRejectedError:
            self._metrics.sends.labels("token_rejected").inc()
            async with doctor_transaction(self._engine, thread.doctor_id) as connection:
                await mark_needs_reauth(
                    connection,
                    doctor_id=thread.doctor_id,
                    now=self._clock.now(),
                    correlation_id=thread.correlation_id,
                )
                await mark_reply_unsent(
                    connection,
                    doctor_id=thread.doctor_id,
                    message_id=message_id,
                    status=HELD,
                    error="token_rejected",
                )
            raise
        except PermanentError as error:
            self._metrics.sends.labels("rejected").inc()
            await self._mark(thread, message_id, FAILED, error.reason)
            raise
        except TransientError as error:
            self._metrics.sends.labels("transient_error").inc()
            await self._mark(thread, message_id, PENDING, error.reason)
            raise
        self._metrics.sends.labels("sent").inc()
        now = self._clock.now()
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            await mark_reply_sent(
                connection,
                doctor_id=thread.doctor_id,
                message_id=message_id,
                conversation_id=thread.conversation_id,
                graph_message_id=graph_message_id,
                now=now,
            )
            await touch_connection(connection, doctor_id=thread.doctor_id, last_send_at=now)

    async def _mark(self, thread: ReplyThread, message_id: str, status: str, error: str) -> None:
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            await mark_reply_unsent(
                connection,
                doctor_id=thread.doctor_id,
                message_id=message_id,
                status=status,
                error=error,
            )

    async def _hold(self, thread: ReplyThread, message_ids: list[str], reason: str) -> None:
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            for message_id in message_ids:
                await mark_reply_unsent(
                    connection,
                    doctor_id=thread.doctor_id,
                    message_id=message_id,
                    status=HELD,
                    error=reason,
                )
