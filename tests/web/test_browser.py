"""In real headless Chromium: a doctor connects, sees a DM arrive live, replies; an operator
replays a dead letter; a doctor cannot open another doctor's conversation. Makes the README's
screenshots (into a temporary folder unless FRONTDESK_SCREENSHOTS_DIR names one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import uvicorn
from sqlalchemy import select

from frontdesk.app import create_app
from frontdesk.auth.accounts import create_account
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clock import SystemClock
from frontdesk.config import Settings
from frontdesk.db.engine import transaction
from frontdesk.db.tables import conversations
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import APP_SECRET, PASSWORD, add_linked_doctor, post_delivery, unscoped

CHROMIUM = os.environ.get("FRONTDESK_CHROMIUM", "/usr/bin/chromium")
# A run leaves the checkout as it was; FRONTDESK_SCREENSHOTS_DIR=docs/screenshots refreshes the
# README's pictures.
SCREENSHOTS = Path(
    os.environ.get("FRONTDESK_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="frontdesk-screens-")
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
IG_ACCOUNT = "17841400000000777"
PATIENT = "7321554890123456"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason="Chromium is installed by .ci/run (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Site:
    url: str
    runtime: Runtime
    fake_graph: FakeGraphApi


@contextlib.asynccontextmanager
async def running_site(settings: Settings) -> AsyncIterator[Site]:
    """Frontdesk (API, pages and embedded worker) and the fake Graph API on real loopback ports."""
    fake_graph = FakeGraphApi()
    async with fake_graph.serve() as graph_url:
        port = free_port()
        site_url = f"http://127.0.0.1:{port}"
        configured = settings.model_copy(
            update={
                "graph_api_url": graph_url,
                "facebook_graph_api_url": graph_url,
                "instagram_oauth_url": graph_url,
                "instagram_authorize_url": f"{graph_url}/oauth/authorize",
                "facebook_authorize_url": graph_url,
                "public_url": site_url,
                "worker_poll_seconds": 0.1,
                "retry_delays": [1],
            }
        )
        runtime = Runtime.build(configured, clock=SystemClock())
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(runtime, run_worker=True),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)
        try:
            yield Site(url=site_url, runtime=runtime, fake_graph=fake_graph)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15)


async def new_doctor_account(runtime: Runtime, email: str) -> str:
    async with transaction(runtime.engine) as connection:
        doctor = await create_doctor(
            connection, name="Dr. Rivera", email=email, now=runtime.clock.now()
        )
        await create_account(
            connection,
            email=email,
            role="doctor",
            doctor_id=doctor.id,
            password=PASSWORD,
            now=runtime.clock.now(),
        )
    return doctor.id


async def sign_in(page: object, site: Site, email: str) -> None:
    await page.goto(f"{site.url}/sign-in")  # type: ignore[attr-defined]
    await page.fill("input[name=email]", email)  # type: ignore[attr-defined]
    await page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    await page.click("button[type=submit]")  # type: ignore[attr-defined]


async def simulate_dm(site: Site, text: str) -> None:
    """`frontdesk simulate dm`, exactly as an operator would type it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRONTDESK_")}
    env["FRONTDESK_APP_SECRETS"] = APP_SECRET
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "frontdesk",
        "simulate",
        "dm",
        "--page-id",
        IG_ACCOUNT,
        "--sender",
        PATIENT,
        "--text",
        text,
        "--url",
        f"{site.url}/webhooks/instagram",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def eventually(check: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def test_a_doctor_connects_sees_a_dm_arrive_without_reloading_and_replies(
    settings: Settings, browser: object
) -> None:
    async with running_site(settings) as site:
        site.fake_graph.add_instagram_account(IG_ACCOUNT, "clinic.rivera")
        await new_doctor_account(site.runtime, "rivera@clinic.test")
        context = await browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
        page = await context.new_page()

        await sign_in(page, site, "rivera@clinic.test")
        await page.click("text=Connect Instagram")
        await page.wait_for_url(re.compile(r".*\?instagram=connected"))
        assert "@clinic.rivera" in await page.inner_text("#connection-card")

        await page.goto(f"{site.url}/inbox")
        assert "No conversations yet" in await page.inner_text("main")
        await simulate_dm(site, "Hello, can I book a visit on Thursday?")
        await page.wait_for_selector("ul.list a", timeout=10_000)
        await page.screenshot(path=str(SCREENSHOTS / "inbox.png"), full_page=True)

        await page.click("ul.list a")
        await page.wait_for_selector("text=Hello, can I book a visit on Thursday?")
        await page.fill("textarea[name=text]", "Yes — Thursday at 16:00 works.")
        await page.click("text=Send reply")

        async def reply_arrived() -> bool:
            return any(
                send.text == "Yes — Thursday at 16:00 works." for send in site.fake_graph.sends
            )

        await eventually(reply_arrived)
        [manual] = [s for s in site.fake_graph.sends if s.text.startswith("Yes — Thursday")]
        assert (manual.recipient_id, manual.account_id) == (PATIENT, IG_ACCOUNT)
        await page.wait_for_selector("[data-origin=manual]")
        await page.wait_for_selector("[data-origin=manual] .badge", state="detached")
        await page.screenshot(path=str(SCREENSHOTS / "conversation.png"), full_page=True)
        await context.close()


async def test_an_operator_replays_a_dead_letter_and_sees_it_processed(
    settings: Settings, browser: object
) -> None:
    async with running_site(settings) as site:
        await add_linked_doctor(site.runtime, name="Dr. Okafor", page_id=IG_ACCOUNT, token="t")
        async with transaction(site.runtime.engine) as connection:
            await create_account(
                connection,
                email="ops@clinic.test",
                role="operator",
                password=PASSWORD,
                now=site.runtime.clock.now(),
            )
        site.fake_graph.fail_next(2, status=500)
        async with httpx2.AsyncClient(base_url=site.url) as http:
            dm = payloads.dm_delivery(page_id=IG_ACCOUNT, sender=PATIENT, text="hi")
            assert (await post_delivery(http, dm)).status_code == 200

        page = await (await browser.new_context()).new_page()  # type: ignore[attr-defined]
        await sign_in(page, site, "ops@clinic.test")
        await page.wait_for_url(re.compile(r".*/ops$"))

        async def dead_letter_listed() -> bool:
            await page.goto(f"{site.url}/ops/dead-letters")
            return await page.locator("input[name=event_id]").count() == 1

        await eventually(dead_letter_listed, within=15)
        await page.check("input[name=event_id]")
        await page.click("text=Replay selected")

        async def processed() -> bool:
            await page.goto(f"{site.url}/ops/events?status=processed")
            return (
                "message" in await page.inner_text("main") and await page.locator("td").count() > 0
            )

        await eventually(processed, within=15)
        assert len(site.fake_graph.sends) == 1
        await page.goto(f"{site.url}/ops")
        await page.screenshot(path=str(SCREENSHOTS / "operator-health.png"), full_page=True)


async def test_a_doctor_cannot_open_another_doctors_conversation_by_url(
    settings: Settings, browser: object
) -> None:
    async with running_site(settings) as site:
        other = await add_linked_doctor(
            site.runtime, name="Dr. B", page_id="17841466698760002", token="b"
        )
        await new_doctor_account(site.runtime, "rivera@clinic.test")
        async with httpx2.AsyncClient(base_url=site.url) as http:
            dm = payloads.dm_delivery(page_id=other.page_id, sender=PATIENT, text="private to B")
            await post_delivery(http, dm)

        async def conversation_exists() -> bool:
            async with unscoped(site.runtime) as connection:
                return (await connection.execute(select(conversations.c.id))).first() is not None

        await eventually(conversation_exists)
        async with unscoped(site.runtime) as connection:
            conversation_id = (await connection.execute(select(conversations.c.id))).scalar_one()
        page = await (await browser.new_context()).new_page()  # type: ignore[attr-defined]
        await sign_in(page, site, "rivera@clinic.test")
        response = await page.goto(f"{site.url}/inbox/{conversation_id}")

        assert response.status == 404
        assert "private to B" not in await page.content()
