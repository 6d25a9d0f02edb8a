"""Request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Body(BaseModel):
    """A request body: unknown fields are refused, and so is NUL in any text (PostgreSQL cannot
    store it, and no honest client sends it)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("text may not contain NUL characters")
        return value


class SignIn(Body):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class AcceptInvite(Body):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=200)


class AccountOut(BaseModel):
    id: str
    email: str
    role: Literal["doctor", "operator"]
    doctor_id: str | None


class SignedIn(BaseModel):
    account: AccountOut
    csrf_token: str


class NewApiToken(Body):
    name: str = Field(min_length=1, max_length=100)


class ApiTokenOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedApiToken(ApiTokenOut):
    token: str = Field(description="Shown once; store it now.")


class DoctorOut(BaseModel):
    id: str
    name: str
    email: str
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    patient_label: str
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    unread_count: int
    reply_window_open: bool


class ConversationPage(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None


class AttachmentOut(BaseModel):
    type: str
    url: str | None


class MessageOut(BaseModel):
    id: str
    direction: Literal["inbound", "outbound"]
    origin: str
    text: str | None
    attachments: list[AttachmentOut]
    occurred_at: datetime
    send_status: str | None
    send_error: str | None
    edited: bool
    deleted: bool


class MessagePage(BaseModel):
    messages: list[MessageOut]


class NewReply(Body):
    text: str = Field(min_length=1, max_length=4000)


class QueuedReplyOut(BaseModel):
    message_ids: list[str]
    send_status: Literal["pending"]


class ReplyRulesBody(Body):
    enabled: bool
    greeting_text: str = Field(max_length=2000)
    cooldown_seconds: int = Field(ge=0, le=30 * 24 * 3600)
    emergency_words: list[str] = Field(max_length=100)
    emergency_text: str = Field(max_length=2000)


class AuditRowOut(BaseModel):
    id: int
    created_at: datetime
    resource_type: str
    resource_id: str | None
    action: str
    status: str
    error_message: str | None
    metadata: dict[str, object]


class AuditPage(BaseModel):
    rows: list[AuditRowOut]


EventStatus = Literal["queued", "processing", "processed", "ignored", "failed", "dead"]


class OperatorEventOut(BaseModel):
    """An event's ids and metadata; never its payload or any message text."""

    id: int
    kind: str
    status: str
    reason: str | None
    doctor_id: str | None
    attempts: int = Field(description="Attempts since it was last queued from scratch.")
    received_at: datetime
    occurred_at: datetime
    last_error: str | None


class EventAttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error_class: str | None
    error_code: str | None


class OperatorEventDetail(BaseModel):
    event: OperatorEventOut
    attempts: list[EventAttemptOut] = Field(description="Every attempt, replays included.")


MAX_ROW_ID = 2**63 - 1
"""The largest id a row can have (a 64-bit integer); larger ones are refused, not sent to SQL."""
RowIdValue = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class ReplayEvents(Body):
    event_ids: list[RowIdValue] = Field(min_length=1, max_length=500)


class ReplayedEvents(BaseModel):
    replayed: list[int]


class BulkReplayResult(BaseModel):
    replayed: list[int]
    skipped: list[int] = Field(description="Unknown ids, and events still queued or processing.")


class DeadLettersReplayed(BaseModel):
    replayed_count: int


class UnroutedPageOut(BaseModel):
    page_id_hash: str = Field(description="A hash of the page id; the id itself is never shown.")
    events: int
    first_received_at: datetime
    last_received_at: datetime


class InstagramConnectionSummaryOut(BaseModel):
    status: Literal["active", "needs_reauth", "disconnected", "not_connected"]
    username: str | None
    connected_at: datetime | None
    token_expires_at: datetime | None
    last_webhook_at: datetime | None
    last_send_at: datetime | None


class OperatorDoctorOut(DoctorOut):
    instagram: InstagramConnectionSummaryOut


class AuthorizeUrlOut(BaseModel):
    authorize_url: str = Field(description="Open this in the doctor's browser.")


class ConnectionOut(BaseModel):
    status: Literal["not_connected", "active", "needs_reauth", "disconnected"]
    login_kind: Literal["instagram", "facebook"] | None = None
    username: str | None = None
    connected_at: datetime | None = None
    token_expires_at: datetime | None = None
    last_webhook_at: datetime | None = None
    last_send_at: datetime | None = None


class DisconnectedOut(BaseModel):
    status: Literal["disconnected"]
    unsubscribed: bool = Field(description="Whether Meta confirmed the unsubscription.")


class PageOptionOut(BaseModel):
    page_id: str
    name: str


class PageChoiceOut(BaseModel):
    pages: list[PageOptionOut]


class ChoosePage(Body):
    page_id: str = Field(min_length=1, max_length=64)


class ReplayedCount(BaseModel):
    replayed_count: int
