"""Send stored outbound messages with the doctor's own token, and record how each send ended.

Delivery is at least once where the outcome is unknowable (a timeout, or a crash between Meta's
answer and our commit) and exactly once everywhere else: a part Meta accepted is marked sent, and
until that write lands the process remembers it, so a database outage right after Meta's answer
makes this process record the part when the database is back rather than send it again. Before
each part the worker proves it still holds the event's lease, so two workers never send the same
part side by side.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import stamina
from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.clinic.connections import (
    ACTIVE,
    find_connection_and_token,
    mark_needs_reauth,
    touch_connection,
)
from frontdesk.clinic.conversations import (
    OutboundMessage,
    mark_reply_sent,
    mark_reply_unsent,
    replies_for_event,
)
from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.db.engine import DATABASE_WAIT_SECONDS, DatabaseUnavailableError
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.errors import PermanentError, TransientError
from frontdesk.graph.client import GraphClient, SendTarget
from frontdesk.graph.errors import TokenRejectedError
from frontdesk.metrics import Metrics

SENT = "sent"
PENDING = "pending"
FAILED = "failed"
HELD = "held"

# How long a part Meta accepted keeps trying to be recorded before its event is retried, at
# most: never longer than the event's lease has left after a send that took the whole timeout.
RECORD_SENT_PATIENCE_SECONDS = 30.0
RECORD_RETRY_WAIT_MAX = 0.5
# How many accepted-but-unrecorded parts a process remembers. An event that another process
# took over, or that went to the dead letters, never comes back here for its parts: the oldest
# are forgotten first, so the memory stays bounded through any number of outages.
REMEMBER_ACCEPTED_AT_MOST = 10_000

LeaseKeeper = Callable[[], Awaitable[bool]]


class LeaseLostError(TransientError):
    """Another worker took the event over; this one must stop sending for it."""


@dataclass(frozen=True)
class SendSummary:
    sent: int
    held: int
    already_sent: int


@dataclass(frozen=True)
class ReplyThread:
    """Who the messages go to, and how the caller keeps its claim on the work while sending."""

    doctor_id: str
    conversation_id: str
    recipient_id: str
    correlation_id: str | None
    keep_lease: LeaseKeeper | None = None


class ReplySender:
    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        graph: GraphClient,
        clock: Clock,
        metrics: Metrics,
        *,
        record_patience_seconds: float = RECORD_SENT_PATIENCE_SECONDS,
        remember_accepted_at_most: int = REMEMBER_ACCEPTED_AT_MOST,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._graph = graph
        self._clock = clock
        self._metrics = metrics
        # Parts Meta accepted whose "sent" is not committed yet: message id -> Meta's id.
        self._accepted_unrecorded: OrderedDict[str, str] = OrderedDict()
        self._remember_at_most = remember_accepted_at_most
        self._write_sent_patiently = stamina.retry(
            on=DatabaseUnavailableError,
            attempts=None,
            timeout=record_patience_seconds,
            wait_initial=0.05,
            wait_max=RECORD_RETRY_WAIT_MAX,
        )(self._write_sent)

    async def send_replies(self, thread: ReplyThread, event_id: int) -> SendSummary:
        """Send what was planned for an inbound event. Raises TransientError to retry the rest
        later, PermanentError when Meta refused a part."""
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            replies = await replies_for_event(
                connection, self._keyring, doctor_id=thread.doctor_id, event_id=event_id
            )
        return await self.send_messages(thread, replies)

    async def send_messages(
        self, thread: ReplyThread, messages: Sequence[OutboundMessage]
    ) -> SendSummary:
        unsent = [message for message in messages if message.send_status != SENT]
        already_sent = len(messages) - len(unsent)
        # Recorded by whoever took the event over while this process waited for the database.
        self._forget(message.id for message in messages if message.send_status == SENT)
        # Parts Meta already accepted are recorded, not sent, whatever the connection's state.
        remembered = {
            message.id: self._accepted_unrecorded[message.id]
            for message in unsent
            if message.id in self._accepted_unrecorded
        }
        for message_id, graph_message_id in remembered.items():
            await self._record_sent(thread, message_id, graph_message_id)
        unsent = [message for message in unsent if message.id not in remembered]
        already_sent += len(remembered)
        if not unsent:
            return SendSummary(sent=0, held=0, already_sent=already_sent)
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            found = await find_connection_and_token(
                connection, self._keyring, doctor_id=thread.doctor_id
            )
        link, token = found if found is not None else (None, None)
        if link is None or link.status != ACTIVE or token is None:
            await self._mark(thread, unsent, HELD, "connection_not_active")
            return SendSummary(sent=0, held=len(unsent), already_sent=already_sent)
        for index, message in enumerate(unsent):
            if thread.keep_lease is not None and not await thread.keep_lease():
                raise LeaseLostError("lease_lost")
            try:
                await self._send_one(thread, message, link.send_target, token)
            except TokenRejectedError:
                await self._token_rejected(thread, unsent[index:])
                raise
        return SendSummary(sent=len(unsent), held=0, already_sent=already_sent)

    async def give_up(
        self, thread: ReplyThread, messages: Sequence[OutboundMessage], reason: str
    ) -> None:
        """Mark messages that can no longer be sent (the 24-hour window closed, say) as failed."""
        await self._mark(thread, messages, FAILED, reason)

    async def _send_one(
        self, thread: ReplyThread, message: OutboundMessage, target: SendTarget, token: str
    ) -> None:
        try:
            graph_message_id = await self._graph.send_text(
                target, recipient_id=thread.recipient_id, text=message.text, access_token=token
            )
        except TokenRejectedError:
            self._metrics.sends.labels("token_rejected").inc()
            raise
        except PermanentError as error:
            self._metrics.sends.labels("rejected").inc()
            await self._mark(thread, [message], FAILED, error.reason)
            raise
        except TransientError as error:
            self._metrics.sends.labels("transient_error").inc()
            await self._mark(thread, [message], PENDING, error.reason)
            raise
        self._metrics.sends.labels("sent").inc()
        self._remember(message.id, graph_message_id)
        await self._record_sent(thread, message.id, graph_message_id)

    async def _record_sent(
        self, thread: ReplyThread, message_id: str, graph_message_id: str
    ) -> None:
        """Meta has the message: losing this write would send it again. It is retried for a
        while; if the database stays away, the event's retry records it instead of sending."""
        await self._write_sent_patiently(thread, message_id, graph_message_id)
        self._forget([message_id])

    def _remember(self, message_id: str, graph_message_id: str) -> None:
        self._accepted_unrecorded[message_id] = graph_message_id
        while len(self._accepted_unrecorded) > self._remember_at_most:
            self._accepted_unrecorded.popitem(last=False)
        self._metrics.accepted_unrecorded.set(len(self._accepted_unrecorded))

    def _forget(self, message_ids: Iterable[str]) -> None:
        for message_id in message_ids:
            self._accepted_unrecorded.pop(message_id, None)
        self._metrics.accepted_unrecorded.set(len(self._accepted_unrecorded))

    async def _write_sent(
        self, thread: ReplyThread, message_id: str, graph_message_id: str
    ) -> None:
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

    async def _token_rejected(
        self, thread: ReplyThread, waiting: Sequence[OutboundMessage]
    ) -> None:
        """The connection needs re-authorisation; this part and the rest wait for it."""
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            await mark_needs_reauth(
                connection,
                doctor_id=thread.doctor_id,
                now=self._clock.now(),
                correlation_id=thread.correlation_id,
            )
            for message in waiting:
                await mark_reply_unsent(
                    connection,
                    doctor_id=thread.doctor_id,
                    message_id=message.id,
                    status=HELD,
                    error="token_rejected",
                )

    async def _mark(
        self, thread: ReplyThread, messages: Sequence[OutboundMessage], status: str, error: str
    ) -> None:
        async with doctor_transaction(self._engine, thread.doctor_id) as connection:
            for message in messages:
                await mark_reply_unsent(
                    connection,
                    doctor_id=thread.doctor_id,
                    message_id=message.id,
                    status=status,
                    error=error,
                )


def least_lease_for_a_send(*, graph_timeout_seconds: float) -> float:
    """The lease one reply part needs besides its recording patience: the longest send, the
    longest wait of the write that records it (retries start only before the patience ends),
    and one pause between tries."""
    return graph_timeout_seconds + DATABASE_WAIT_SECONDS + RECORD_RETRY_WAIT_MAX


def record_patience_within_lease(*, lease_seconds: float, graph_timeout_seconds: float) -> float:
    """How long to keep recording an accepted part so that the lease, renewed before the send,
    outlasts the send and the recording: past it another worker could take the event and send
    the part again."""
    spare = lease_seconds - least_lease_for_a_send(graph_timeout_seconds=graph_timeout_seconds)
    return max(0.0, min(RECORD_SENT_PATIENCE_SECONDS, spare))
