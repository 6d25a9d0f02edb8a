"""A doctor's own data: profile, conversations and messages, reply rules, audit rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy import select

from frontdesk.api.deps import DoctorId, RuntimeDep
from frontdesk.api.errors import ApiError, correlation_id_of, error_responses, not_found
from frontdesk.api.schemas import (
    AttachmentOut,
    AuditPage,
    AuditRowOut,
    ConversationOut,
    ConversationPage,
    DoctorOut,
    MessageOut,
    MessagePage,
    NewReply,
    QueuedReplyOut,
    ReplyRulesBody,
)
from frontdesk.clinic.doctors import get_doctor
from frontdesk.clinic.inbox import (
    InvalidCursorError,
    get_conversation,
    list_conversations,
    list_messages,
    mark_conversation_read,
)
from frontdesk.db.tables import audit_logs
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.replies.manual import (
    IdempotencyKeyReusedError,
    MessagingWindowClosedError,
    NotConnectedError,
    queue_manual_reply,
)
from frontdesk.replies.responder import DEFAULT_RULES
from frontdesk.replies.rules import load_reply_rules, save_reply_rules

router = APIRouter(prefix="/api/v1", tags=["doctor"])
ERRORS = error_responses(401, 403)
NOT_FOUND = error_responses(401, 403, 404)


@router.get("/me", responses=ERRORS, summary="A doctor: who they are.")
async def me(runtime: RuntimeDep, doctor_id: DoctorId) -> DoctorOut:
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        doctor = await get_doctor(connection, doctor_id)
    return DoctorOut(**doctor.__dict__)


@router.get(
    "/conversations",
    responses=error_responses(400, 401, 403),
    summary="A doctor: their conversations, newest activity first.",
)
async def conversations(
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> ConversationPage:
    now = runtime.clock.now()
    try:
        async with doctor_transaction(runtime.engine, doctor_id) as connection:
            page, next_cursor = await list_conversations(
                connection, doctor_id=doctor_id, limit=limit, cursor=cursor
            )
    except InvalidCursorError as error:
        raise ApiError(400, "invalid_cursor", error.reason) from error
    return ConversationPage(
        conversations=[
            ConversationOut(
                id=item.id,
                patient_label=item.patient_label,
                last_message_at=item.last_message_at,
                last_inbound_at=item.last_inbound_at,
                unread_count=item.unread_count,
                reply_window_open=item.reply_window_open(now),
            )
            for item in page
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/conversations/{conversation_id}/messages",
    responses=NOT_FOUND,
    summary="The doctor who owns the conversation: its messages, oldest first; marks it read.",
)
async def conversation_messages(
    conversation_id: str,
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> MessagePage:
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        conversation = await get_conversation(
            connection, doctor_id=doctor_id, conversation_id=conversation_id
        )
        if conversation is None:
            raise not_found("conversation")
        stored = await list_messages(
            connection,
            runtime.keyring,
            doctor_id=doctor_id,
            conversation_id=conversation_id,
            limit=limit,
        )
        await mark_conversation_read(
            connection,
            doctor_id=doctor_id,
            conversation_id=conversation_id,
            now=runtime.clock.now(),
        )
    return MessagePage(
        messages=[
            MessageOut(
                id=message.id,
                direction=message.direction,
                origin=message.origin,
                text=message.body.text if message.body else None,
                attachments=[
                    AttachmentOut(type=str(item.get("type")), url=item.get("url"))
                    for item in (message.body.attachments if message.body else [])
                ],
                occurred_at=message.occurred_at,
                send_status=message.send_status,
                send_error=message.send_error,
                edited=message.edited,
                deleted=message.deleted,
            )
            for message in stored
        ]
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=202,
    responses={
        **error_responses(401, 403, 404, 409, 422),
        200: {"model": QueuedReplyOut, "description": "Already queued under this Idempotency-Key"},
    },
    summary=(
        "The doctor who owns the conversation: queue a manual reply (sent with their token). "
        "An Idempotency-Key header makes a retried request queue it once; the same key with "
        "another text is 422 idempotency_key_reused."
    ),
)
async def send_manual_reply(
    conversation_id: str,
    body: NewReply,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> QueuedReplyOut:
    try:
        async with doctor_transaction(runtime.engine, doctor_id) as connection:
            conversation = await get_conversation(
                connection, doctor_id=doctor_id, conversation_id=conversation_id
            )
            if conversation is None:
                raise not_found("conversation")
            queued = await queue_manual_reply(
                connection,
                runtime.keyring,
                doctor_id=doctor_id,
                conversation=conversation,
                text=body.text,
                now=runtime.clock.now(),
                idempotency_key=idempotency_key,
                correlation_id=correlation_id_of(request),
            )
    except MessagingWindowClosedError as error:
        raise ApiError(409, "messaging_window_closed", error.reason) from error
    except NotConnectedError as error:
        raise ApiError(409, "instagram_not_connected", error.reason) from error
    except IdempotencyKeyReusedError as error:
        raise ApiError(422, "idempotency_key_reused", error.reason) from error
    runtime.worker.wake()
    if not queued.created:
        response.status_code = 200
    return QueuedReplyOut(message_ids=queued.message_ids, send_status="pending")


@router.get("/settings/replies", responses=ERRORS, summary="A doctor: their auto-reply rules.")
async def get_reply_rules(runtime: RuntimeDep, doctor_id: DoctorId) -> ReplyRulesBody:
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        rules = await load_reply_rules(connection, doctor_id)
    return ReplyRulesBody(
        enabled=rules.enabled,
        greeting_text=rules.greeting_text,
        cooldown_seconds=int(rules.cooldown.total_seconds()),
        emergency_words=list(rules.emergency_words),
        emergency_text=rules.emergency_text,
    )


@router.put(
    "/settings/replies", responses=ERRORS, summary="A doctor: replace their auto-reply rules."
)
async def put_reply_rules(
    body: ReplyRulesBody, runtime: RuntimeDep, doctor_id: DoctorId
) -> ReplyRulesBody:
    rules = replace(
        DEFAULT_RULES,
        enabled=body.enabled,
        greeting_text=body.greeting_text.strip(),
        cooldown=timedelta(seconds=body.cooldown_seconds),
        emergency_words=tuple(word.strip() for word in body.emergency_words if word.strip()),
        emergency_text=body.emergency_text.strip(),
    )
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        await save_reply_rules(connection, doctor_id, rules, runtime.clock.now())
    return await get_reply_rules(runtime, doctor_id)


@router.get(
    "/audit", responses=ERRORS, summary="A doctor: the audit rows about them, newest first."
)
async def audit(
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        rows = await connection.execute(
            select(audit_logs)
            .where(audit_logs.c.doctor_id == doctor_id)
            .order_by(audit_logs.c.id.desc())
            .limit(limit)
        )
        return AuditPage(
            rows=[
                AuditRowOut(
                    id=row.id,
                    created_at=row.created_at,
                    resource_type=row.resource_type,
                    resource_id=row.resource_id,
                    action=row.action,
                    status=row.status,
                    error_message=row.error_message,
                    metadata=row.metadata,
                )
                for row in rows
            ]
        )
