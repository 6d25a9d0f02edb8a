"""Who is calling an endpoint: a doctor (session cookie or API token) or an operator (session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from frontdesk.api.errors import ApiError
from frontdesk.auth.accounts import DOCTOR, OPERATOR
from frontdesk.auth.api_tokens import resolve_api_token
from frontdesk.auth.sessions import SESSION_LIFETIME, resolve_session, start_session
from frontdesk.db.engine import transaction
from frontdesk.runtime import Runtime

SESSION_COOKIE = "frontdesk_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="A doctor's API token (fdt_…).")
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"The sign-in session; unsafe methods also need the {CSRF_HEADER} header.",
)


@dataclass(frozen=True)
class Principal:
    role: str
    doctor_id: str | None
    account_id: str | None
    csrf_token: str | None


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def open_session(
    runtime: Runtime, request: Request, response: Response, account_id: str
) -> str:
    """Start a session and set its cookie (Secure over https); returns its CSRF token."""
    async with transaction(runtime.engine) as connection:
        token, csrf_token = await start_session(connection, account_id, now=runtime.clock.now())
    secure = request.url.scheme == "https" or runtime.settings.public_url.startswith("https")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    return csrf_token


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session_token: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal:
    now = runtime.clock.now()
    if request.headers.get("authorization"):
        if bearer is None or bearer.scheme.lower() != "bearer":
            raise _unauthorized("use Authorization: Bearer <API token>")
        async with transaction(runtime.engine) as connection:
            doctor_id = await resolve_api_token(connection, bearer.credentials, now=now)
        if doctor_id is None:
            raise _unauthorized("the API token is unknown or revoked")
        return Principal(role=DOCTOR, doctor_id=doctor_id, account_id=None, csrf_token=None)
    if session_token:
        async with transaction(runtime.engine) as connection:
            session = await resolve_session(connection, session_token, now=now)
        if session is None:
            raise _unauthorized("the session has ended; sign in again")
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != (
            session.csrf_token
        ):
            raise ApiError(403, "csrf_failed", f"the {CSRF_HEADER} header is missing or wrong")
        return Principal(
            role=session.account.role,
            doctor_id=session.account.doctor_id,
            account_id=session.account.id,
            csrf_token=session.csrf_token,
        )
    raise _unauthorized("sign in, or send an API token")


AuthenticatedDep = Annotated[Principal, Depends(authenticate)]


async def require_doctor(principal: AuthenticatedDep) -> str:
    """The calling doctor's id: everything the request touches is scoped to it."""
    if principal.role != DOCTOR or principal.doctor_id is None:
        raise ApiError(403, "forbidden", "only a doctor may call this")
    return principal.doctor_id


async def require_operator(principal: AuthenticatedDep) -> Principal:
    if principal.role != OPERATOR:
        raise ApiError(403, "forbidden", "only an operator may call this")
    return principal


DoctorId = Annotated[str, Depends(require_doctor)]
Operator = Annotated[Principal, Depends(require_operator)]
