"""Putting the pages together: their routers, and what a page does when sign-in is needed."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from frontdesk.web import doctor, operator, public
from frontdesk.web.auth import FormRejected, SignInRequired, sign_in_url
from frontdesk.web.templating import templates


def web_routers() -> list[APIRouter]:
    return [public.router, doctor.router, operator.router]


def install_page_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, error: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            # htmx follows a redirect inside the fragment; tell the whole page to go instead.
            return Response(status_code=401, headers={"HX-Redirect": sign_in_url(error.next_path)})
        return RedirectResponse(sign_in_url(error.next_path), status_code=303)

    @app.exception_handler(FormRejected)
    async def _form_rejected(request: Request, _error: FormRejected) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "form_rejected.html",
            {"user": None},
            status_code=403,
        )
