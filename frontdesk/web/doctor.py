"""The doctor's pages: the Instagram connection, the inbox with replies, and reply rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from frontdesk.api.deps import RuntimeDep
from frontdesk.clinic.connect import PageChoiceInvalidError
from frontdesk.clinic.connections import (
    ConnectionNotFoundError,
    PageOwnedByAnotherDoctorError,
    find_connection,
)
from frontdesk.clinic.inbox import (
    get_conversation,
    list_conversations,
    list_messages,
    mark_conversation_read,
)
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.graph.oauth import OAuthStepError
from frontdesk.replies.manual import (
    MessagingWindowClosedError,
    NotConnectedError,
    queue_manual_reply,
)
from frontdesk.replies.responder import DEFAULT_RULES
from frontdesk.replies.rules import load_reply_rules, save_reply_rules
from frontdesk.web.auth import DoctorPage, PageUser, check_form
from frontdesk.web.templating import templates

router = APIRouter(include_in_schema=False)

CONNECT_NOTICES = {
    "connected": ("ok", "Instagram is connected. New messages will appear in your inbox."),
    "declined": ("error", "Instagram was not connected: the permission was declined on Meta."),
    "disconnected": ("ok", "Instagram is disconnected. Its messages no longer reach Frontdesk."),
}
INBOX_PAGE_SIZE = 50


def _render(
    request: Request, template: str, user: PageUser, status: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"user": user, **context}, status_code=status
    )


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request, runtime: RuntimeDep, user: DoctorPage, instagram: str | None = None
) -> HTMLResponse:
    assert user.doctor_id is not None
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        link = await find_connection(connection, user.doctor_id)
    return _render(
        request, "home.html", user, connection=link, notice=CONNECT_NOTICES.get(instagram or "")
    )


@router.post("/instagram/connect")
async def start_connect(request: Request, runtime: RuntimeDep, user: DoctorPage) -> Response:
    assert user.doctor_id is not None
    form = await check_form(request, user)
    login = "facebook" if form.get("login") == "facebook" else "instagram"
    return RedirectResponse(await runtime.connect.authorize_url(user.doctor_id, login), 303)


@router.post("/instagram/disconnect")
async def disconnect(request: Request, runtime: RuntimeDep, user: DoctorPage) -> Response:
    assert user.doctor_id is not None
    await check_form(request, user)
    try:
        result = await runtime.connect.disconnect(user.doctor_id)
    except ConnectionNotFoundError:
        return RedirectResponse("/", 303)
    notice = "" if result.unsubscribed else "&unsubscribe=failed"
    return RedirectResponse(f"/?instagram=disconnected{notice}", 303)


@router.get("/instagram/pages/{choice_id}", response_class=HTMLResponse)
async def choose_page_form(
    request: Request, choice_id: str, runtime: RuntimeDep, user: DoctorPage
) -> HTMLResponse:
    assert user.doctor_id is not None
    try:
        options = await runtime.connect.page_options(user.doctor_id, choice_id)
    except PageChoiceInvalidError as error:
        return _render(
            request, "choose_page.html", user, status=404, error=error.reason, options=()
        )
    return _render(request, "choose_page.html", user, choice_id=choice_id, options=options)


@router.post("/instagram/pages/{choice_id}", response_class=HTMLResponse)
async def choose_page(
    request: Request, choice_id: str, runtime: RuntimeDep, user: DoctorPage
) -> Response:
    assert user.doctor_id is not None
    form = await check_form(request, user)
    try:
        await runtime.connect.choose_page(user.doctor_id, choice_id, form.get("page_id", ""))
    except (PageChoiceInvalidError, PageOwnedByAnotherDoctorError, OAuthStepError) as error:
        return _render(
            request, "choose_page.html", user, status=400, error=error.reason, options=()
        )
    runtime.worker.wake()
    return RedirectResponse("/?instagram=connected", 303)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, runtime: RuntimeDep, user: DoctorPage) -> HTMLResponse:
    return _render(request, "inbox.html", user, **await _inbox_context(runtime, user))


@router.get("/inbox/list", response_class=HTMLResponse)
async def inbox_list(request: Request, runtime: RuntimeDep, user: DoctorPage) -> HTMLResponse:
    """The list alone, for htmx to refresh in place."""
    return _render(request, "_conversations.html", user, **await _inbox_context(runtime, user))


async def _inbox_context(runtime: RuntimeDep, user: PageUser) -> dict[str, Any]:
    assert user.doctor_id is not None
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        conversations, _cursor = await list_conversations(
            connection, doctor_id=user.doctor_id, limit=INBOX_PAGE_SIZE
        )
        link = await find_connection(connection, user.doctor_id)
    return {"conversations": conversations, "connection": link, "now": runtime.clock.now()}


@router.get("/inbox/{conversation_id}", response_class=HTMLResponse)
async def conversation_page(
    request: Request, conversation_id: str, runtime: RuntimeDep, user: DoctorPage
) -> HTMLResponse:
    context = await _conversation_context(runtime, user, conversation_id)
    if context is None:
        return _render(request, "not_found.html", user, status=404, what="conversation")
    return _render(request, "conversation.html", user, **context)


@router.get("/inbox/{conversation_id}/messages", response_class=HTMLResponse)
async def conversation_messages(
    request: Request, conversation_id: str, runtime: RuntimeDep, user: DoctorPage
) -> HTMLResponse:
    context = await _conversation_context(runtime, user, conversation_id)
    if context is None:
        return _render(request, "not_found.html", user, status=404, what="conversation")
    return _render(request, "_messages.html", user, **context)


async def _conversation_context(
    runtime: RuntimeDep, user: PageUser, conversation_id: str
) -> dict[str, Any] | None:
    assert user.doctor_id is not None
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        conversation = await get_conversation(
            connection, doctor_id=user.doctor_id, conversation_id=conversation_id
        )
        if conversation is None:
            return None
        messages = await list_messages(
            connection,
            runtime.keyring,
            doctor_id=user.doctor_id,
            conversation_id=conversation_id,
            limit=200,
        )
        await mark_conversation_read(
            connection,
            doctor_id=user.doctor_id,
            conversation_id=conversation_id,
            now=runtime.clock.now(),
        )
    now = runtime.clock.now()
    return {
        "conversation": conversation,
        "messages": messages,
        "window_open": conversation.reply_window_open(now),
    }


@router.post("/inbox/{conversation_id}/reply", response_class=HTMLResponse)
async def reply(
    request: Request, conversation_id: str, runtime: RuntimeDep, user: DoctorPage
) -> Response:
    assert user.doctor_id is not None
    form = await check_form(request, user)
    text = form.get("text", "").strip()
    error = None
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        conversation = await get_conversation(
            connection, doctor_id=user.doctor_id, conversation_id=conversation_id
        )
        if conversation is None:
            return _render(request, "not_found.html", user, status=404, what="conversation")
        if not text or len(text) > 4000:
            error = "Write a reply of 1 to 4000 characters."
        else:
            try:
                await queue_manual_reply(
                    connection,
                    runtime.keyring,
                    doctor_id=user.doctor_id,
                    conversation=conversation,
                    text=text,
                    now=runtime.clock.now(),
                    idempotency_key=form.get("idempotency_key") or None,
                )
            except (MessagingWindowClosedError, NotConnectedError) as refused:
                error = refused.reason
    if error is None:
        runtime.worker.wake()
        return RedirectResponse(f"/inbox/{conversation_id}", 303)
    context = await _conversation_context(runtime, user, conversation_id)
    return _render(
        request, "conversation.html", user, status=400, error=error, draft=text, **(context or {})
    )


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(
    request: Request, runtime: RuntimeDep, user: DoctorPage, saved: bool = False
) -> HTMLResponse:
    assert user.doctor_id is not None
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        rules = await load_reply_rules(connection, user.doctor_id)
    return _render(request, "settings.html", user, rules=rules, saved=saved)


@router.post("/settings", response_class=HTMLResponse)
async def save_settings(request: Request, runtime: RuntimeDep, user: DoctorPage) -> Response:
    assert user.doctor_id is not None
    form = await check_form(request, user)
    try:
        cooldown_hours = float(form.get("cooldown_hours", "12"))
    except ValueError:
        cooldown_hours = -1
    if not 0 <= cooldown_hours <= 24 * 30:
        async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
            rules = await load_reply_rules(connection, user.doctor_id)
        return _render(
            request,
            "settings.html",
            user,
            status=400,
            rules=rules,
            error="The cooldown must be 0 to 720 hours.",
        )
    rules = replace(
        DEFAULT_RULES,
        enabled=form.get("enabled") == "on",
        greeting_text=form.get("greeting_text", "").strip()[:2000],
        cooldown=timedelta(hours=cooldown_hours),
        emergency_words=tuple(
            word.strip() for word in form.get("emergency_words", "").split(",") if word.strip()
        )[:100],
        emergency_text=form.get("emergency_text", "").strip()[:2000],
    )
    async with doctor_transaction(runtime.engine, user.doctor_id) as connection:
        await save_reply_rules(connection, user.doctor_id, rules, runtime.clock.now())
    return RedirectResponse("/settings?saved=true", 303)
