"""Who is looking at a page: the signed-in doctor or operator, and the CSRF check for forms."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from frontdesk.api.deps import SESSION_COOKIE, RuntimeDep
from frontdesk.auth.accounts import DOCTOR, OPERATOR
from frontdesk.auth.sessions import resolve_session
from frontdesk.db.engine import transaction

FORM_COOKIE = "frontdesk_form"


class SignInRequired(Exception):
    """The page needs a signed-in account of the right role; go to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in required")
        self.next_path = next_path


class FormRejected(Exception):
    """A form came without the right CSRF token, or from another site."""


@dataclass(frozen=True)
class PageUser:
    account_id: str
    email: str
    role: str
    doctor_id: str | None
    csrf_token: str


async def current_user(request: Request, runtime: RuntimeDep) -> PageUser:
    token = request.cookies.get(SESSION_COOKIE)
    session = None
    if token:
        async with transaction(runtime.engine) as connection:
            session = await resolve_session(connection, token, now=runtime.clock.now())
    if session is None:
        raise SignInRequired(request.url.path)
    return PageUser(
        account_id=session.account.id,
        email=session.account.email,
        role=session.account.role,
        doctor_id=session.account.doctor_id,
        csrf_token=session.csrf_token,
    )


async def current_doctor(user: Annotated[PageUser, Depends(current_user)]) -> PageUser:
    if user.role != DOCTOR or user.doctor_id is None:
        raise SignInRequired("/")
    return user


async def current_operator(user: Annotated[PageUser, Depends(current_user)]) -> PageUser:
    if user.role != OPERATOR:
        raise SignInRequired("/ops")
    return user


DoctorPage = Annotated[PageUser, Depends(current_doctor)]
OperatorPage = Annotated[PageUser, Depends(current_operator)]


def sign_in_url(next_path: str) -> str:
    return f"/sign-in?next={quote(next_path, safe='/')}"


def check_origin(request: Request) -> None:
    """A form must come from our own pages (SameSite cookies are the first wall, this one next)."""
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise FormRejected


async def check_form(request: Request, user: PageUser) -> dict[str, str]:
    """The submitted form, after its CSRF token and origin were checked."""
    check_origin(request)
    form = await request.form()
    submitted = form.get("csrf_token")
    if not isinstance(submitted, str) or not hmac.compare_digest(submitted, user.csrf_token):
        raise FormRejected
    return _text_fields(form.items())


def new_form_token() -> str:
    """For forms shown before there is a session (sign-in, invite): a double-submit cookie."""
    return secrets.token_urlsafe(24)


async def check_anonymous_form(request: Request) -> dict[str, str]:
    check_origin(request)
    form = await request.form()
    submitted = form.get("form_token")
    expected = request.cookies.get(FORM_COOKIE, "")
    if (
        not isinstance(submitted, str)
        or not expected
        or not hmac.compare_digest(submitted, expected)
    ):
        raise FormRejected
    return _text_fields(form.items())


def _text_fields(items: Iterable[tuple[str, object]]) -> dict[str, str]:
    """The form's text fields, NUL removed (no column can store it; no person types it)."""
    return {key: value.replace("\x00", "") for key, value in items if isinstance(value, str)}
