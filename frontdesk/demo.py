"""`frontdesk demo`: a throwaway embedded instance, the fake Graph API, a few DMs, the result."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import httpx2
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from frontdesk.app import create_app
from frontdesk.clinic.connections import link_instagram
from frontdesk.clinic.doctors import Doctor, create_doctor
from frontdesk.config import Settings
from frontdesk.crypto import generate_key_spec
from frontdesk.db.engine import transaction
from frontdesk.db.migrate import upgrade_to_head
from frontdesk.db.tables import webhook_events
from frontdesk.logs import configure_logging
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from frontdesk.testing.signing import signed_headers

DEMO_SECRET = "demo-app-secret"  # noqa: S105 - a throwaway instance's own secret
PAGES = {"Dr. Rivera": "17841455512340001", "Dr. Okafor": "17841466698760002"}
UNKNOWN_PAGE = "17849999999999999"


async def run_demo(console: Console) -> None:
    configure_logging("WARNING")
    fake_graph = FakeGraphApi()
    with tempfile.TemporaryDirectory(prefix="frontdesk-demo-") as folder:
        async with fake_graph.serve() as graph_url:
            settings = _demo_settings(Path(folder), graph_url)
            upgrade_to_head(settings.resolved_database_url())
            runtime = Runtime.build(settings)
            try:
                doctors = await _add_doctors(runtime)
                await _post_deliveries(runtime)
                await runtime.worker.run_until_idle()
                await _print_events(console, runtime, doctors)
            finally:
                await runtime.stop()
    _print_sends(console, fake_graph, doctors)


def _demo_settings(folder: Path, graph_url: str) -> Settings:
    return Settings(
        var_dir=folder,
        database_url=f"sqlite:///{folder / 'demo.db'}",
        app_secrets=[DEMO_SECRET],
        verify_token="demo-verify-token",  # noqa: S106
        encryption_keys=[generate_key_spec()],
        graph_api_url=graph_url,
        facebook_graph_api_url=graph_url,
    )


async def _add_doctors(runtime: Runtime) -> dict[str, Doctor]:
    doctors: dict[str, Doctor] = {}
    async with transaction(runtime.engine) as connection:
        for name, page_id in PAGES.items():
            doctor = await create_doctor(
                connection,
                name=name,
                email=f"{name.split()[-1].lower()}@clinic.example",
                now=runtime.clock.now(),
            )
            await link_instagram(
                connection,
                runtime.keyring,
                doctor_id=doctor.id,
                instagram_page_id=page_id,
                access_token=_demo_token(page_id),
                now=runtime.clock.now(),
            )
            doctors[page_id] = doctor
    return doctors


async def _post_deliveries(runtime: Runtime) -> None:
    now_ms = int(runtime.clock.now().timestamp() * 1000)
    rivera, okafor = PAGES.values()
    batch = payloads.delivery(
        payloads.entry(rivera, messaging=[_dm(rivera, "7000000000000001", "demo-1", now_ms)]),
        payloads.entry(okafor, messaging=[_dm(okafor, "7000000000000002", "demo-2", now_ms)]),
    )
    echo = payloads.delivery(
        payloads.entry(
            rivera,
            messaging=[
                payloads.echo_item(
                    page_id=rivera,
                    recipient="7000000000000001",
                    mid="demo-echo",
                    text="Sent from the clinic's phone",
                    timestamp=now_ms + 1000,
                )
            ],
        )
    )
    unknown = payloads.delivery(
        payloads.entry(
            UNKNOWN_PAGE, messaging=[_dm(UNKNOWN_PAGE, "7000000000000003", "demo-3", now_ms)]
        )
    )
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.demo"
    ) as client:
        for delivery in (batch, batch, echo, unknown):
            body = payloads.encode(delivery)
            await client.post(
                "/webhooks/instagram", content=body, headers=signed_headers(body, DEMO_SECRET)
            )


def _dm(page_id: str, sender: str, mid: str, timestamp: int) -> payloads.JSON:
    return payloads.message_item(
        sender=sender,
        recipient=page_id,
        mid=mid,
        text="Hello, can I book a visit?",
        timestamp=timestamp - int(timedelta(seconds=5).total_seconds() * 1000),
    )


async def _print_events(console: Console, runtime: Runtime, doctors: dict[str, Doctor]) -> None:
    by_id = {doctor.id: doctor.name for doctor in doctors.values()}
    async with transaction(runtime.engine) as connection:
        rows = list(await connection.execute(select(webhook_events).order_by(webhook_events.c.id)))
    table = Table(
        "event", "kind", "status", "reason", "doctor", title="What happened to each event"
    )
    for row in rows:
        table.add_row(
            str(row.id), row.kind, row.status, row.reason or "", by_id.get(row.doctor_id or "", "—")
        )
    console.print(table)
    console.print("(The duplicate delivery added no events: its two events were already stored.)")


def _print_sends(console: Console, fake_graph: FakeGraphApi, doctors: dict[str, Doctor]) -> None:
    token_owner = {_demo_token(page_id): doctor.name for page_id, doctor in doctors.items()}
    table = Table(
        "sent as", "with the token of", "characters", title="Replies the fake Graph API got"
    )
    for send in fake_graph.sends:
        sender = doctors.get(send.account_id)
        table.add_row(
            sender.name if sender else "?",
            token_owner.get(send.access_token, "?"),
            str(len(send.text)),
        )
    console.print(table)


def _demo_token(page_id: str) -> str:
    return f"demo-token-{page_id[-4:]}"
