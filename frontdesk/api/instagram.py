"""A doctor's Instagram connection: connect through Meta's OAuth, status, disconnect, replay."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from frontdesk.api.deps import DoctorId, RuntimeDep
from frontdesk.api.errors import ApiError, error_responses, not_found
from frontdesk.api.schemas import (
    AuthorizeUrlOut,
    ChoosePage,
    ConnectionOut,
    DisconnectedOut,
    PageChoiceOut,
    PageOptionOut,
    ReplayedCount,
)
from frontdesk.clinic.connect import (
    NoInstagramPageError,
    PageChoiceInvalidError,
    StateInvalidError,
)
from frontdesk.clinic.connections import (
    ConnectionNotFoundError,
    InstagramConnection,
    PageOwnedByAnotherDoctorError,
    find_connection,
)
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.graph.oauth import OAuthStepError
from frontdesk.runtime import Runtime
from frontdesk.web.templating import templates

router = APIRouter(prefix="/api/v1/instagram", tags=["instagram"])
ERRORS = error_responses(401, 403)
DOCTOR_HOME = "/"


def connection_out(connection: InstagramConnection | None) -> ConnectionOut:
    if connection is None:
        return ConnectionOut(status="not_connected")
    return ConnectionOut(
        status=connection.status,
        login_kind=connection.login_kind,
        username=connection.username,
        connected_at=connection.connected_at,
        token_expires_at=connection.token_expires_at,
        last_webhook_at=connection.last_webhook_at,
        last_send_at=connection.last_send_at,
    )


@router.post(
    "/connect",
    responses=ERRORS,
    summary="A doctor: start connecting; returns Meta's authorize URL (state valid 10 min).",
)
async def connect(
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    login: Annotated[Literal["instagram", "facebook"], Query()] = "instagram",
) -> AuthorizeUrlOut:
    return AuthorizeUrlOut(authorize_url=await runtime.connect.authorize_url(doctor_id, login))


@router.get(
    "/callback",
    status_code=303,
    response_class=RedirectResponse,
    responses=error_responses(400, 401, 403, 409, 422, 502),
    summary=(
        "The doctor's browser, back from Meta: finish connecting, then go to the doctor's page."
    ),
)
async def callback(
    request: Request,
    runtime: RuntimeDep,
    doctor_id: DoctorId,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=300)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    try:
        return await _finish_connect(runtime, doctor_id, code, state, error)
    except ApiError as failure:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        # A doctor's browser: a page that says what went wrong and what to do, same status.
        return templates.TemplateResponse(
            request,
            "connect_error.html",
            {"user": None, "message": failure.message},
            status_code=failure.status,
        )


async def _finish_connect(
    runtime: Runtime,
    doctor_id: str,
    code: str | None,
    state: str | None,
    error: str | None,
) -> RedirectResponse:
    try:
        login_kind = await runtime.connect.consume_state(doctor_id, state)
    except StateInvalidError as invalid:
        raise ApiError(400, "invalid_state", invalid.reason) from invalid
    if error is not None:
        return RedirectResponse(f"{DOCTOR_HOME}?instagram=declined", status_code=303)
    if not code:
        raise ApiError(400, "missing_code", "Meta sent no authorization code; start again")
    try:
        result = await runtime.connect.complete(doctor_id, login_kind, code.removesuffix("#_"))
    except PageOwnedByAnotherDoctorError as owned:
        raise ApiError(409, "account_owned_by_another_doctor", owned.reason) from owned
    except NoInstagramPageError as missing:
        raise ApiError(422, "no_instagram_page", missing.reason) from missing
    except OAuthStepError as failed:
        raise ApiError(
            502, "graph_error", f"Meta refused the {failed.step} step ({failed.reason})"
        ) from failed
    runtime.worker.wake()
    if result.page_choice_id is not None:
        return RedirectResponse(f"/instagram/pages/{result.page_choice_id}", status_code=303)
    return RedirectResponse(f"{DOCTOR_HOME}?instagram=connected", status_code=303)


@router.get(
    "/facebook-pages/{choice_id}",
    responses=error_responses(401, 403, 404),
    summary="A doctor: the Facebook Pages they may connect (after Facebook Login).",
)
async def facebook_pages(choice_id: str, runtime: RuntimeDep, doctor_id: DoctorId) -> PageChoiceOut:
    try:
        options = await runtime.connect.page_options(doctor_id, choice_id)
    except PageChoiceInvalidError as invalid:
        raise not_found("page choice") from invalid
    return PageChoiceOut(pages=[PageOptionOut(page_id=o.page_id, name=o.name) for o in options])


@router.post(
    "/facebook-pages/{choice_id}",
    responses=error_responses(401, 403, 404, 409, 502),
    summary="A doctor: connect the chosen Facebook Page's Instagram account.",
)
async def choose_facebook_page(
    choice_id: str, body: ChoosePage, runtime: RuntimeDep, doctor_id: DoctorId
) -> ConnectionOut:
    try:
        connection = await runtime.connect.choose_page(doctor_id, choice_id, body.page_id)
    except PageChoiceInvalidError as invalid:
        raise not_found("page choice") from invalid
    except PageOwnedByAnotherDoctorError as owned:
        raise ApiError(409, "account_owned_by_another_doctor", owned.reason) from owned
    except OAuthStepError as failed:
        raise ApiError(
            502, "graph_error", f"Meta refused the {failed.step} step ({failed.reason})"
        ) from failed
    runtime.worker.wake()
    return connection_out(connection)


@router.get("/connection", responses=ERRORS, summary="A doctor: their connection's state.")
async def connection_status(runtime: RuntimeDep, doctor_id: DoctorId) -> ConnectionOut:
    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        return connection_out(await find_connection(connection, doctor_id))


@router.delete(
    "/connection",
    responses=error_responses(401, 403, 404),
    summary="A doctor: disconnect (unsubscribe at Meta, delete the token).",
)
async def disconnect(runtime: RuntimeDep, doctor_id: DoctorId) -> DisconnectedOut:
    try:
        result = await runtime.connect.disconnect(doctor_id)
    except ConnectionNotFoundError as missing:
        raise not_found("Instagram connection") from missing
    return DisconnectedOut(status="disconnected", unsubscribed=result.unsubscribed)


@router.post(
    "/connection/replay-unrouted",
    responses=ERRORS,
    summary="A doctor: queue again messages patients sent before this account was connected.",
)
async def replay_unrouted(runtime: RuntimeDep, doctor_id: DoctorId) -> ReplayedCount:
    replayed = await runtime.connect.replay_unrouted(doctor_id)
    runtime.worker.wake()
    return ReplayedCount(replayed_count=replayed)
