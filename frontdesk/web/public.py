"""Pages anyone may open: sign in, sign out, and accepting an invite."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from frontdesk.api.deps import SESSION_COOKIE, RuntimeDep, open_session
from frontdesk.auth.accounts import (
    OPERATOR,
    InviteInvalidError,
    SignInRefused,
    accept_invite,
    sign_in,
)
from frontdesk.auth.passwords import MIN_PASSWORD_LENGTH, WeakPasswordError
from frontdesk.auth.sessions import end_session
from frontdesk.db.engine import transaction
from frontdesk.web.auth import (
    FORM_COOKIE,
    PageUser,
    check_anonymous_form,
    check_form,
    current_user,
    new_form_token,
)
from frontdesk.web.templating import templates

router = APIRouter(include_in_schema=False)


def _anonymous_form(
    request: Request, template: str, *, status: int = 200, **context: object
) -> HTMLResponse:
    token = new_form_token()
    response = templates.TemplateResponse(
        request, template, {"form_token": token, **context}, status_code=status
    )
    response.set_cookie(FORM_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def _safe_next(next_path: str | None) -> str:
    """Only our own paths: never an open redirect."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//"):
        return next_path
    return "/"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _anonymous_form(request, "sign_in.html", next=_safe_next(next))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in_submit(request: Request, runtime: RuntimeDep) -> Response:
    form = await check_anonymous_form(request)
    async with transaction(runtime.engine) as connection:
        result = await sign_in(
            connection,
            email=form.get("email", ""),
            password=form.get("password", ""),
            now=runtime.clock.now(),
        )
    if isinstance(result, SignInRefused):
        return _anonymous_form(
            request,
            "sign_in.html",
            status=429 if result.retry_after else 401,
            error=result.reason,
            email=form.get("email", ""),
            next=_safe_next(form.get("next")),
        )
    next_path = _safe_next(form.get("next"))
    home = "/ops" if result.role == OPERATOR else "/"
    response = RedirectResponse(home if next_path == "/" else next_path, 303)
    await open_session(runtime, request, response, result.id)
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, runtime: RuntimeDep, user: Annotated[PageUser, Depends(current_user)]
) -> Response:
    await check_form(request, user)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with transaction(runtime.engine) as connection:
            await end_session(connection, token)
    response = RedirectResponse("/sign-in", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/invite/{token}", response_class=HTMLResponse)
async def invite_page(request: Request, token: str) -> HTMLResponse:
    return _anonymous_form(
        request, "invite.html", invite_token=token, min_length=MIN_PASSWORD_LENGTH
    )


@router.post("/invite/{token}", response_class=HTMLResponse)
async def invite_submit(request: Request, token: str, runtime: RuntimeDep) -> Response:
    form = await check_anonymous_form(request)
    if form.get("password") != form.get("password_again"):
        return _invite_error(request, token, "the two passwords differ")
    try:
        async with transaction(runtime.engine) as connection:
            account = await accept_invite(
                connection, token=token, password=form.get("password", ""), now=runtime.clock.now()
            )
    except (InviteInvalidError, WeakPasswordError) as error:
        return _invite_error(request, token, error.reason)
    response = RedirectResponse("/ops" if account.role == OPERATOR else "/", 303)
    await open_session(runtime, request, response, account.id)
    return response


def _invite_error(request: Request, token: str, message: str) -> HTMLResponse:
    return _anonymous_form(
        request,
        "invite.html",
        status=400,
        invite_token=token,
        min_length=MIN_PASSWORD_LENGTH,
        error=message,
    )
