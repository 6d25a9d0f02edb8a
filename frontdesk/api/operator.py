"""The operator's desk: the queue's events and dead letters, unrouted pages, every doctor.

Operators see ids, statuses, counts and hashes; never payloads, message text or page ids.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime

from frontdesk.api.deps import RuntimeDep, require_operator
from frontdesk.api.errors import ApiError, correlation_id_of, error_responses, not_found
from frontdesk.api.schemas import (
    MAX_ROW_ID,
    BulkReplayResult,
    DeadLettersReplayed,
    EventAttemptOut,
    EventStatus,
    InstagramConnectionSummaryOut,
    OperatorDoctorOut,
    OperatorEventDetail,
    OperatorEventOut,
    ReplayedEvents,
    ReplayEvents,
    UnroutedPageOut,
)
from frontdesk.clinic.roster import ConnectionSummary, list_roster
from frontdesk.db.engine import transaction
from frontdesk.db.tenancy import system_transaction
from frontdesk.handlers.routing import UNKNOWN_PAGE
from frontdesk.inbox.events import (
    EventSummary,
    get_event,
    list_attempts,
    list_events,
    list_failed_pages,
)
from frontdesk.inbox.queue import DEAD
from frontdesk.inbox.replay import replay_all_dead, replay_audited, replay_each

router = APIRouter(
    prefix="/api/v1/operator", tags=["operator"], dependencies=[Depends(require_operator)]
)
ERRORS = error_responses(401, 403)
LISTING = error_responses(401, 403, 422)
NOT_FOUND = error_responses(401, 403, 404)

Limit = Annotated[int, Query(ge=1, le=500)]
EventId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
NOT_CONNECTED = "not_connected"


def _event_out(event: EventSummary) -> OperatorEventOut:
    return OperatorEventOut(
        id=event.id,
        kind=event.kind,
        status=event.status,
        reason=event.reason,
        doctor_id=event.doctor_id,
        attempts=event.attempts,
        received_at=event.received_at,
        occurred_at=event.occurred_at,
        last_error=event.last_error,
    )


@router.get(
    "/events",
    responses=LISTING,
    summary="An operator: events, newest first, filtered; ids and metadata only.",
)
async def events(
    runtime: RuntimeDep,
    status: EventStatus | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    doctor_id: Annotated[str | None, Query(max_length=36)] = None,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Received at or after (ISO 8601, with offset).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Received before (ISO 8601, with offset).")
    ] = None,
    limit: Limit = 100,
) -> list[OperatorEventOut]:
    async with transaction(runtime.engine) as connection:
        found = await list_events(
            connection,
            status=status,
            kind=kind,
            doctor_id=doctor_id,
            reason=reason,
            since=since,
            until=until,
            limit=limit,
        )
    return [_event_out(event) for event in found]


@router.get(
    "/events/{event_id}",
    responses=NOT_FOUND,
    summary="An operator: one event and every attempt at it.",
)
async def event_detail(event_id: EventId, runtime: RuntimeDep) -> OperatorEventDetail:
    async with transaction(runtime.engine) as connection:
        event = await get_event(connection, event_id)
        if event is None:
            raise not_found("event")
        attempts = await list_attempts(connection, event_id)
    return OperatorEventDetail(
        event=_event_out(event),
        attempts=[
            EventAttemptOut(
                attempt=attempt.attempt,
                started_at=attempt.started_at,
                finished_at=attempt.finished_at,
                outcome=attempt.outcome,
                error_class=attempt.error_class,
                error_code=attempt.error_code,
            )
            for attempt in attempts
        ],
    )


@router.post(
    "/events/{event_id}/replay",
    status_code=202,
    responses=error_responses(401, 403, 404, 409),
    summary="An operator: queue a finished event again (e.g. an unknown page, now linked).",
)
async def replay_one(event_id: EventId, request: Request, runtime: RuntimeDep) -> ReplayedEvents:
    async with transaction(runtime.engine) as connection:
        if await get_event(connection, event_id) is None:
            raise not_found("event")
        replayed = await replay_audited(
            connection, event_id, now=runtime.clock.now(), correlation_id=correlation_id_of(request)
        )
    if not replayed:
        raise ApiError(409, "not_replayable", "the event is still queued or processing")
    runtime.worker.wake()
    return ReplayedEvents(replayed=[event_id])


@router.post(
    "/events/replay",
    status_code=202,
    responses=LISTING,
    summary="An operator: queue several finished events again; unknown or open ones are skipped.",
)
async def replay_many(
    body: ReplayEvents, request: Request, runtime: RuntimeDep
) -> BulkReplayResult:
    async with transaction(runtime.engine) as connection:
        replayed, skipped = await replay_each(
            connection,
            body.event_ids,
            now=runtime.clock.now(),
            correlation_id=correlation_id_of(request),
        )
    if replayed:
        runtime.worker.wake()
    return BulkReplayResult(replayed=replayed, skipped=skipped)


@router.get(
    "/dead-letters",
    responses=LISTING,
    summary="An operator: dead events (out of retries), newest first, with their last error.",
)
async def dead_letters(runtime: RuntimeDep, limit: Limit = 100) -> list[OperatorEventOut]:
    async with transaction(runtime.engine) as connection:
        found = await list_events(connection, status=DEAD, limit=limit)
    return [_event_out(event) for event in found]


@router.post(
    "/dead-letters/replay",
    status_code=202,
    responses=ERRORS,
    summary="An operator: queue every dead event again.",
)
async def replay_dead_letters(request: Request, runtime: RuntimeDep) -> DeadLettersReplayed:
    async with transaction(runtime.engine) as connection:
        count = await replay_all_dead(
            connection, now=runtime.clock.now(), correlation_id=correlation_id_of(request)
        )
    if count:
        runtime.worker.wake()
    return DeadLettersReplayed(replayed_count=count)


@router.get(
    "/unrouted",
    responses=LISTING,
    summary="An operator: events failed for an unknown page, grouped by a hash of the page id.",
)
async def unrouted(runtime: RuntimeDep, limit: Limit = 100) -> list[UnroutedPageOut]:
    async with transaction(runtime.engine) as connection:
        groups = await list_failed_pages(connection, reason=UNKNOWN_PAGE, limit=limit)
    return [UnroutedPageOut(**group.__dict__) for group in groups]


@router.get(
    "/doctors",
    responses=ERRORS,
    summary="An operator: every doctor and the state of their Instagram connection.",
)
async def doctors(runtime: RuntimeDep) -> list[OperatorDoctorOut]:
    # Other doctors' connections are readable only in the system scope; tokens are not read.
    async with system_transaction(runtime.engine) as connection:
        roster = await list_roster(connection)
    return [
        OperatorDoctorOut(**entry.doctor.__dict__, instagram=_connection_out(entry.connection))
        for entry in roster
    ]


def _connection_out(summary: ConnectionSummary | None) -> InstagramConnectionSummaryOut:
    if summary is None:
        return InstagramConnectionSummaryOut(
            status=NOT_CONNECTED,
            username=None,
            connected_at=None,
            token_expires_at=None,
            last_webhook_at=None,
            last_send_at=None,
        )
    return InstagramConnectionSummaryOut(
        status=summary.status,
        username=summary.username,
        connected_at=summary.connected_at,
        token_expires_at=summary.token_expires_at,
        last_webhook_at=summary.last_webhook_at,
        last_send_at=summary.last_send_at,
    )
