"""The operator's pages: pipeline health, events and their timelines, dead letters, audit, doctors.

Like the operator's JSON API, these show ids, statuses, counts and hashes; never payloads,
message text, patient ids or page ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.api.deps import RuntimeDep
from frontdesk.api.errors import correlation_id_of
from frontdesk.api.schemas import MAX_ROW_ID
from frontdesk.audit import list_audit
from frontdesk.auth.accounts import create_invite, invite_link
from frontdesk.clinic.doctors import list_doctors
from frontdesk.clinic.roster import add_doctor, list_roster, needing_reauth
from frontdesk.db.engine import transaction
from frontdesk.db.tenancy import system_transaction
from frontdesk.errors import FrontdeskError
from frontdesk.handlers.routing import UNKNOWN_PAGE
from frontdesk.inbox.events import get_event, list_attempts, list_events, list_failed_pages
from frontdesk.inbox.health import BUCKET, Bucket, queue_health
from frontdesk.inbox.queue import DEAD, FINAL_STATUSES, OPEN_STATUSES
from frontdesk.inbox.replay import replay_audited, replay_each
from frontdesk.web.auth import OperatorPage, PageUser, check_form
from frontdesk.web.templating import templates

router = APIRouter(include_in_schema=False)

LIST_LIMIT = 200
MAX_REPLAY = 500
EVENT_STATUSES = (*OPEN_STATUSES, *FINAL_STATUSES)
SIGNATURE_FAILURES = "frontdesk_webhook_signature_failures_total"
DEAD_LETTERS = "dead-letters"


def _render(
    request: Request, template: str, user: PageUser, status: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, f"ops/{template}", {"user": user, **context}, status_code=status
    )


def _not_found(request: Request, user: PageUser, what: str) -> HTMLResponse:
    return _render(request, "not_found.html", user, status=404, what=what)


def _event_id(raw: str) -> int | None:
    """A row id from the path, or None for anything that cannot be one (a 404, not a 422)."""
    if not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ROW_ID else None


async def _doctor_names(connection: AsyncConnection) -> dict[str, str]:
    return {doctor.id: doctor.name for doctor in await list_doctors(connection)}


# --- health -----------------------------------------------------------------------------------

HOUR = timedelta(hours=1)
CHART_WIDTH = 360
CHART_HEIGHT = 100
BAR_GAP = 2


@dataclass(frozen=True)
class ChartBar:
    x: float
    width: float
    processed_y: float
    processed_height: float
    failures_y: float
    failures_height: float
    title: str


def _clock_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M")


def _chart(buckets: list[Bucket]) -> list[ChartBar]:
    """Stacked bars, drawn on the server: processed at the bottom, failed or dead on top."""
    tallest = max((bucket.processed + bucket.failures for bucket in buckets), default=0) or 1
    slot = CHART_WIDTH / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        processed = CHART_HEIGHT * bucket.processed / tallest
        failures = CHART_HEIGHT * bucket.failures / tallest
        bars.append(
            ChartBar(
                x=round(index * slot + BAR_GAP / 2, 2),
                width=round(slot - BAR_GAP, 2),
                processed_y=round(CHART_HEIGHT - processed, 2),
                processed_height=round(processed, 2),
                failures_y=round(CHART_HEIGHT - processed - failures, 2),
                failures_height=round(failures, 2),
                title=(
                    f"{_clock_time(bucket.start)}–{_clock_time(bucket.end)} UTC: "
                    f"{bucket.processed} processed ({bucket.processed_per_minute:.1f}/min), "
                    f"{bucket.failures} failed or dead"
                ),
            )
        )
    return bars


def _age(age: timedelta | None) -> str:
    if age is None:
        return "—"
    seconds = int(age.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


@router.get("/ops", response_class=HTMLResponse)
async def health(request: Request, runtime: RuntimeDep, user: OperatorPage) -> HTMLResponse:
    now = runtime.clock.now()
    async with transaction(runtime.engine) as connection:
        queue = await queue_health(connection, now=now)
    async with system_transaction(runtime.engine) as connection:
        reauth = needing_reauth(await list_roster(connection))
    buckets = queue.buckets
    last_hour = buckets[-(HOUR // BUCKET) :]
    processed_last_hour = sum(bucket.processed for bucket in last_hour)
    minutes = max((now - last_hour[0].start) / timedelta(minutes=1), 1.0)
    signature_failures = runtime.metrics.registry.get_sample_value(SIGNATURE_FAILURES) or 0
    return _render(
        request,
        "health.html",
        user,
        queue=queue,
        oldest_age=_age(queue.oldest_queued_age),
        processed_last_hour=processed_last_hour,
        per_minute=processed_last_hour / minutes,
        rate_since=_clock_time(last_hour[0].start),
        failures_total=sum(bucket.failures for bucket in buckets),
        processed_total=sum(bucket.processed for bucket in buckets),
        bars=_chart(buckets),
        chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        window_start=_clock_time(buckets[0].start),
        window_end=_clock_time(buckets[-1].end),
        signature_failures=int(signature_failures),
        reauth=reauth,
    )


# --- events -----------------------------------------------------------------------------------


def _moment(raw: str) -> datetime:
    """A `datetime-local` field (read as UTC) or an ISO 8601 time with an offset."""
    moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:  # e.g. the first hours of year 1, east of UTC
        raise ValueError("out of range") from error


@router.get("/ops/events", response_class=HTMLResponse)
async def events(
    request: Request,
    runtime: RuntimeDep,
    user: OperatorPage,
    status: str = "",
    kind: str = "",
    doctor_id: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
) -> HTMLResponse:
    filters = {
        "status": status,
        "kind": kind.strip()[:32],
        "doctor_id": doctor_id.strip()[:36],
        "reason": reason.strip()[:64],
        "since": since.strip()[:40],
        "until": until.strip()[:40],
    }
    errors = []
    if status and status not in EVENT_STATUSES:
        errors.append("Choose a status from the list.")
    bounds: dict[str, datetime | None] = {"since": None, "until": None}
    for name in bounds:
        if filters[name]:
            try:
                bounds[name] = _moment(filters[name])
            except ValueError:
                errors.append(f"“{name.capitalize()}” is not a date and time.")
    async with transaction(runtime.engine) as connection:
        doctors = await _doctor_names(connection)
        found = (
            []
            if errors
            else await list_events(
                connection,
                status=status or None,
                kind=filters["kind"] or None,
                doctor_id=filters["doctor_id"] or None,
                reason=filters["reason"] or None,
                since=bounds["since"],
                until=bounds["until"],
                limit=LIST_LIMIT,
            )
        )
    return _render(
        request,
        "events.html",
        user,
        status=400 if errors else 200,
        events=found,
        errors=errors,
        filters=filters,
        filtered=any(filters.values()),
        statuses=EVENT_STATUSES,
        doctors=doctors,
        limit=LIST_LIMIT,
    )


REPLAY_NOTICES = {
    "1": ("ok", "Queued again; the worker picks it up shortly."),
    "0": ("error", "Not replayed: the event was still queued or processing."),
}


@router.get("/ops/events/{event_id}", response_class=HTMLResponse)
async def event_detail(
    request: Request, event_id: str, runtime: RuntimeDep, user: OperatorPage, replayed: str = ""
) -> HTMLResponse:
    number = _event_id(event_id)
    if number is None:
        return _not_found(request, user, "event")
    async with transaction(runtime.engine) as connection:
        event = await get_event(connection, number)
        if event is None:
            return _not_found(request, user, "event")
        attempts = await list_attempts(connection, number)
        doctors = await _doctor_names(connection)
    finished = event.status in FINAL_STATUSES
    return _render(
        request,
        "event.html",
        user,
        event=event,
        attempts=attempts,
        doctor=doctors.get(event.doctor_id or ""),
        finished=finished,
        # Only the worker finishes an event, and it records that attempt in the same step.
        finished_at=attempts[-1].finished_at if finished and attempts else None,
        notice=REPLAY_NOTICES.get(replayed),
    )


@router.post("/ops/events/{event_id}/replay")
async def replay_one(
    request: Request, event_id: str, runtime: RuntimeDep, user: OperatorPage
) -> Response:
    form = await check_form(request, user)
    number = _event_id(event_id)
    if number is None:
        return _not_found(request, user, "event")
    async with transaction(runtime.engine) as connection:
        if await get_event(connection, number) is None:
            return _not_found(request, user, "event")
        replayed = await replay_audited(
            connection, number, now=runtime.clock.now(), correlation_id=correlation_id_of(request)
        )
    if replayed:
        runtime.worker.wake()
    count = 1 if replayed else 0
    if form.get("return_to") == DEAD_LETTERS:
        return RedirectResponse(f"/ops/dead-letters?replayed={count}", 303)
    return RedirectResponse(f"/ops/events/{number}?replayed={count}", 303)


# --- dead letters -----------------------------------------------------------------------------


@router.get("/ops/dead-letters", response_class=HTMLResponse)
async def dead_letters(
    request: Request,
    runtime: RuntimeDep,
    user: OperatorPage,
    replayed: str = "",
    skipped: str = "",
) -> HTMLResponse:
    async with transaction(runtime.engine) as connection:
        found = await list_events(connection, status=DEAD, limit=LIST_LIMIT)
        doctors = await _doctor_names(connection)
    return _render(
        request,
        "dead_letters.html",
        user,
        events=found,
        doctors=doctors,
        # The notice after a replay; a hand-edited query shows none rather than an error.
        replayed=int(replayed) if replayed.isdigit() else None,
        skipped=int(skipped) if skipped.isdigit() else 0,
        limit=LIST_LIMIT,
        return_to=DEAD_LETTERS,
    )


@router.post("/ops/dead-letters/replay")
async def replay_selected(request: Request, runtime: RuntimeDep, user: OperatorPage) -> Response:
    await check_form(request, user)
    chosen = (await request.form()).getlist("event_id")  # the parsed form is cached
    numbers = [_event_id(value) if isinstance(value, str) else None for value in chosen]
    valid = list(dict.fromkeys(number for number in numbers[:MAX_REPLAY] if number is not None))
    replayed: list[int] = []
    async with transaction(runtime.engine) as connection:
        # A page left open may list events replayed since; replay only what is still dead.
        dead = [
            number
            for number in valid
            if (event := await get_event(connection, number)) and event.status == DEAD
        ]
        if dead:
            replayed, _open = await replay_each(
                connection, dead, now=runtime.clock.now(), correlation_id=correlation_id_of(request)
            )
    if replayed:
        runtime.worker.wake()
    query = {"replayed": len(replayed), "skipped": len(chosen) - len(replayed)}
    return RedirectResponse(f"/ops/dead-letters?{urlencode(query)}", 303)


# --- unrouted ---------------------------------------------------------------------------------


@router.get("/ops/unrouted", response_class=HTMLResponse)
async def unrouted(request: Request, runtime: RuntimeDep, user: OperatorPage) -> HTMLResponse:
    async with transaction(runtime.engine) as connection:
        groups = await list_failed_pages(connection, reason=UNKNOWN_PAGE, limit=LIST_LIMIT)
    return _render(
        request, "unrouted.html", user, groups=groups, limit=LIST_LIMIT, reason=UNKNOWN_PAGE
    )


# --- audit ------------------------------------------------------------------------------------


def _metadata_pairs(metadata: dict[str, Any], prefix: str = "") -> list[str]:
    """`key=value` for each entry; nested mappings as `outer.inner=value`."""
    pairs = []
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += _metadata_pairs(value, f"{name}.")
        elif isinstance(value, list):
            pairs.append(f"{name}={','.join(str(item) for item in value)}")
        else:
            pairs.append(f"{name}={value}")
    return pairs


@router.get("/ops/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    runtime: RuntimeDep,
    user: OperatorPage,
    action: str = "",
    resource_type: str = "",
    doctor_id: str = "",
    status: str = "",
) -> HTMLResponse:
    filters = {
        "action": action.strip()[:64],
        "resource_type": resource_type.strip()[:32],
        "doctor_id": doctor_id.strip()[:36],
        "status": status.strip()[:16],
    }
    # Audit rows of every doctor are visible only in the system scope on PostgreSQL.
    async with system_transaction(runtime.engine) as connection:
        entries = await list_audit(
            connection,
            action=filters["action"] or None,
            resource_type=filters["resource_type"] or None,
            doctor_id=filters["doctor_id"] or None,
            status=filters["status"] or None,
            limit=LIST_LIMIT,
        )
        doctors = await _doctor_names(connection)
    return _render(
        request,
        "audit.html",
        user,
        entries=[(entry, _metadata_pairs(entry.metadata)) for entry in entries],
        filters=filters,
        filtered=any(filters.values()),
        doctors=doctors,
        limit=LIST_LIMIT,
    )


# --- doctors ----------------------------------------------------------------------------------


async def _doctors_page(
    request: Request,
    runtime: RuntimeDep,
    user: PageUser,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    async with system_transaction(runtime.engine) as connection:
        roster = await list_roster(connection)
    return _render(request, "doctors.html", user, status=status, roster=roster, **context)


@router.get("/ops/doctors", response_class=HTMLResponse)
async def doctors(request: Request, runtime: RuntimeDep, user: OperatorPage) -> HTMLResponse:
    return await _doctors_page(request, runtime, user, form={})


@router.post("/ops/doctors", response_class=HTMLResponse)
async def invite(request: Request, runtime: RuntimeDep, user: OperatorPage) -> HTMLResponse:
    form = await check_form(request, user)
    name = form.get("name", "").strip()[:200]
    email = form.get("email", "").strip()[:320]
    entered = {"name": name, "email": email}
    try:
        async with transaction(runtime.engine) as connection:
            doctor, account = await add_doctor(
                connection, name=name, email=email, now=runtime.clock.now()
            )
            token = await create_invite(connection, account.id, now=runtime.clock.now())
    except FrontdeskError as error:
        return await _doctors_page(
            request, runtime, user, status=400, form=entered, error=error.reason
        )
    page = await _doctors_page(
        request,
        runtime,
        user,
        status=201,
        form={},
        invited=doctor,
        invite_link=invite_link(runtime.settings.public_url, token),
    )
    page.headers["Cache-Control"] = "no-store"  # the link is shown once; keep it out of caches
    return page
