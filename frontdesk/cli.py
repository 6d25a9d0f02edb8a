"""The `frontdesk` command: run the service, manage doctors and connections, inspect the queue."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx2
import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from frontdesk.app import create_app
from frontdesk.auth.accounts import OPERATOR, create_account, create_invite, invite_link
from frontdesk.auth.api_tokens import create_api_token
from frontdesk.clinic.connections import (
    ConnectionNotFoundError,
    PageOwnedByAnotherDoctorError,
    link_instagram,
    unlink_instagram,
)
from frontdesk.clinic.doctors import (
    DoctorNotFoundError,
    get_doctor,
    list_doctors,
)
from frontdesk.clinic.roster import add_doctor
from frontdesk.clock import SystemClock
from frontdesk.config import Settings, describe_invalid_settings
from frontdesk.crypto import Keyring
from frontdesk.db.engine import DatabaseUnavailableError, create_engine, transaction
from frontdesk.db.migrate import upgrade_to_head
from frontdesk.embedded import with_embedded_secrets
from frontdesk.errors import FrontdeskError
from frontdesk.inbox.events import EventSummary, get_event, list_attempts, list_events
from frontdesk.inbox.queue import DEAD, replay_dead_events, replay_event
from frontdesk.logs import configure_logging
from frontdesk.runtime import Runtime, SettingsError, check_settings_agree
from frontdesk.testing.payloads import dm_delivery, encode
from frontdesk.testing.signing import signed_headers

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Frontdesk: the Instagram front desk for clinics.",
)
doctor_app = typer.Typer(no_args_is_help=True, help="Doctors.")
instagram_app = typer.Typer(no_args_is_help=True, help="Instagram connections.")
events_app = typer.Typer(no_args_is_help=True, help="Webhook events (ids and metadata only).")
dlq_app = typer.Typer(no_args_is_help=True, help="The dead letter: events that ran out of retries.")
simulate_app = typer.Typer(no_args_is_help=True, help="Post signed test deliveries to an instance.")
operator_app = typer.Typer(no_args_is_help=True, help="Operator accounts.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens for automation.")
app.add_typer(doctor_app, name="doctor")
app.add_typer(operator_app, name="operator")
app.add_typer(token_app, name="token")
app.add_typer(instagram_app, name="instagram")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(simulate_app, name="simulate")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]


class CommandError(Exception):
    """A clear, data-free message for the operator; the command exits with status 1."""


def fail(message: str) -> NoReturn:
    err.print(f"error: {message}", highlight=False)
    raise typer.Exit(1)


def main() -> None:
    app()


def load_settings(*, generate: bool = False) -> Settings:
    try:
        configured = Settings()
        check_settings_agree(configured)
    except ValidationError as error:
        fail(describe_invalid_settings(error))
    except SettingsError as error:
        fail(str(error))
    settings, path = with_embedded_secrets(configured, generate=generate)
    if path is not None and generate:
        err.print(f"Secrets for this embedded instance are kept in {path.resolve()} (mode 0600).")
    return settings


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    keyring: Keyring | None


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    engine = create_engine(settings.resolved_database_url(), role=settings.database_role)
    keyring = Keyring.from_specs(settings.encryption_keys) if settings.encryption_keys else None
    try:
        yield Database(engine=engine, keyring=keyring)
    finally:
        await engine.dispose()


def run_in_transaction(work: Callable[[AsyncConnection, Database], Awaitable[T]]) -> T:
    """Run one unit of work against the configured database and return its result."""
    settings = load_settings()

    async def runner() -> T:
        async with open_database(settings) as database, transaction(database.engine) as connection:
            return await work(connection, database)

    try:
        return asyncio.run(runner())
    except CommandError as error:
        fail(str(error))
    except DatabaseUnavailableError:
        fail("the database is unavailable or not migrated (`frontdesk migrate`)")


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


# --- running the service -------------------------------------------------------------------


def _serve(settings: Settings, host: str, port: int, *, run_worker: bool) -> None:
    try:
        runtime = Runtime.build(settings)
    except SettingsError as error:
        fail(str(error))
    config = uvicorn.Config(
        create_app(runtime, run_worker=run_worker),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    err.print(f"Frontdesk listening on http://{host}:{port}")
    uvicorn.Server(config).run()


@app.command()
def serve(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """API and worker in one process; migrates first. Generates secrets into ./var/ when unset."""
    settings = load_settings(generate=True)
    configure_logging(settings.log_level)
    upgrade_to_head(settings.resolved_database_url())
    _serve(settings, host, port, run_worker=True)


@app.command()
def api(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """The HTTP API alone (run `frontdesk worker` processes beside it)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    _serve(settings, host, port, run_worker=False)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Events handled at once.")] = 4,
) -> None:
    """Workers alone. SIGTERM finishes in-flight events (or gives them back) and exits."""
    settings = load_settings().model_copy(update={"worker_concurrency": concurrency})
    configure_logging(settings.log_level)

    async def run() -> None:
        runtime = Runtime.build(settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runtime.worker.stop)
        try:
            await runtime.worker.run()
        finally:
            await runtime.stop()

    try:
        asyncio.run(run())
    except SettingsError as error:
        fail(str(error))


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    settings = load_settings()
    upgrade_to_head(settings.resolved_database_url())
    err.print("Database is at the newest migration.")


@app.command()
def demo() -> None:
    """A throwaway embedded instance with the fake Graph API: a few DMs, then what happened."""
    from frontdesk.demo import run_demo

    asyncio.run(run_demo(out))


# --- doctors ------------------------------------------------------------------------------


@doctor_app.command("add")
def doctor_add(
    name: Annotated[str, typer.Option(help="The doctor's name as the clinic shows it.")],
    email: Annotated[str, typer.Option(help="The doctor's sign-in email.")],
    invite: Annotated[bool, typer.Option("--invite", help="Print a one-time invite link.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a doctor with a sign-in account and print the new id (and the invite link)."""
    settings = load_settings()

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        now = SystemClock().now()
        try:
            doctor, account = await add_doctor(connection, name=name, email=email, now=now)
        except FrontdeskError as error:
            raise CommandError(error.reason) from error
        token = await create_invite(connection, account.id, now=now) if invite else None
        return doctor, token

    doctor, token = run_in_transaction(work)
    link = invite_link(settings.public_url, token) if token else None
    if as_json:
        print_json({"id": doctor.id, "name": doctor.name, "email": doctor.email, "invite": link})
        return
    out.print(doctor.id)
    if link:
        out.print(f"Invite link (valid 72 h, shown once): {link}")


@operator_app.command("add")
def operator_add(
    email: Annotated[str, typer.Option(help="The operator's sign-in email.")],
    as_json: JsonOption = False,
) -> None:
    """Create an operator account and print a one-time invite link to set its password."""
    settings = load_settings()

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        now = SystemClock().now()
        try:
            account = await create_account(connection, email=email, role=OPERATOR, now=now)
        except FrontdeskError as error:
            raise CommandError(error.reason) from error
        return account, await create_invite(connection, account.id, now=now)

    account, token = run_in_transaction(work)
    link = invite_link(settings.public_url, token)
    if as_json:
        print_json({"id": account.id, "email": account.email, "invite": link})
        return
    out.print(account.id)
    out.print(f"Invite link (valid 72 h, shown once): {link}")


@token_app.command("create")
def token_create(
    doctor: Annotated[str, typer.Option(help="The doctor's id.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "automation",
) -> None:
    """Create an API token for a doctor and print it once."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        try:
            await get_doctor(connection, doctor)
        except DoctorNotFoundError as error:
            raise CommandError(error.reason) from error
        _record, token = await create_api_token(
            connection, doctor_id=doctor, name=name, now=SystemClock().now()
        )
        return token

    out.print(run_in_transaction(work))


@doctor_app.command("list")
def doctor_list(as_json: JsonOption = False) -> None:
    """Every doctor, oldest first."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        return await list_doctors(connection)

    doctors = run_in_transaction(work)
    rows = [
        {"id": d.id, "name": d.name, "email": d.email, "created_at": d.created_at.isoformat()}
        for d in doctors
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "email", "created_at")
    for row in rows:
        table.add_row(*row.values())
    out.print(table)


# --- Instagram connections -----------------------------------------------------------------


def _read_token(path: str) -> str:
    token = sys.stdin.read() if path == "-" else Path(path).read_text()
    token = token.strip()
    if not token:
        fail("the access token file is empty")
    return token


@instagram_app.command("link")
def instagram_link(
    doctor: Annotated[str, typer.Option(help="The doctor's id.")],
    instagram_page_id: Annotated[str, typer.Option(help="Instagram professional account id.")],
    access_token_file: Annotated[
        str, typer.Option(help="File holding the access token; - reads standard input.")
    ],
    facebook_page_id: Annotated[str | None, typer.Option(help="Linked Facebook Page id.")] = None,
    username: Annotated[str | None, typer.Option(help="The account's @username.")] = None,
) -> None:
    """Link an Instagram account to a doctor by hand (refused if another doctor has it)."""
    token = _read_token(access_token_file)

    async def work(connection: AsyncConnection, database: Database) -> Any:
        if database.keyring is None:
            raise CommandError("FRONTDESK_ENCRYPTION_KEYS is not set")
        try:
            await get_doctor(connection, doctor)
            return await link_instagram(
                connection,
                database.keyring,
                doctor_id=doctor,
                instagram_page_id=instagram_page_id,
                facebook_page_id=facebook_page_id,
                username=username,
                access_token=token,
                login_kind="facebook" if facebook_page_id else "instagram",
                now=SystemClock().now(),
            )
        except (DoctorNotFoundError, PageOwnedByAnotherDoctorError) as error:
            raise CommandError(error.reason) from error

    linked = run_in_transaction(work)
    out.print(f"Linked connection {linked.id} to doctor {linked.doctor_id}.")


@instagram_app.command("unlink")
def instagram_unlink(doctor: Annotated[str, typer.Option(help="The doctor's id.")]) -> None:
    """Forget the doctor's account and token; its events route as unknown from now on."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        try:
            return await unlink_instagram(connection, doctor_id=doctor, now=SystemClock().now())
        except ConnectionNotFoundError as error:
            raise CommandError(error.reason) from error

    unlinked = run_in_transaction(work)
    out.print(f"Unlinked connection {unlinked.id}.")


# --- events and the dead letter ------------------------------------------------------------


def _print_events(events: list[EventSummary], as_json: bool) -> None:
    if as_json:
        print_json([event.as_json() for event in events])
        return
    table = Table("id", "kind", "status", "reason", "doctor_id", "attempts", "received_at")
    for event in events:
        table.add_row(
            str(event.id),
            event.kind,
            event.status,
            event.reason or "",
            event.doctor_id or "",
            str(event.attempts),
            event.received_at.isoformat(),
        )
    out.print(table)


@events_app.command("list")
def events_list(
    status: Annotated[str | None, typer.Option(help="Only events in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Events, newest first."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        return await list_events(connection, status=status, limit=limit)

    _print_events(run_in_transaction(work), as_json)


@events_app.command("show")
def events_show(event_id: int, as_json: JsonOption = False) -> None:
    """One event with each attempt and how it ended."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        event = await get_event(connection, event_id)
        if event is None:
            raise CommandError(f"no event {event_id}")
        return event, await list_attempts(connection, event_id)

    event, attempts = run_in_transaction(work)
    detail = {**event.as_json(), "attempt_log": [attempt.as_json() for attempt in attempts]}
    if as_json:
        print_json(detail)
        return
    for key, value in event.as_json().items():
        out.print(f"{key:>12}: {value if value is not None else ''}")
    table = Table("attempt", "started_at", "finished_at", "outcome", "error_class", "error_code")
    for attempt in attempts:
        table.add_row(*(str(value or "") for value in attempt.as_json().values()))
    out.print(table)


def _replay_one(event_id: int) -> None:
    async def work(connection: AsyncConnection, _db: Database) -> Any:
        return await replay_event(connection, event_id, SystemClock().now())

    if not run_in_transaction(work):
        fail(f"event {event_id} does not exist or is still queued or processing")
    out.print(f"Event {event_id} is queued again.")


@events_app.command("replay")
def events_replay(event_id: int) -> None:
    """Queue a finished event again (for example an unknown page, after the doctor connected)."""
    _replay_one(event_id)


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100, as_json: JsonOption = False
) -> None:
    """Dead events, newest first, with their last error."""

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        return await list_events(connection, status=DEAD, limit=limit)

    _print_events(run_in_transaction(work), as_json)


@dlq_app.command("replay")
def dlq_replay(
    event_id: Annotated[int | None, typer.Argument(help="The dead event to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead event.")] = False,
) -> None:
    """Queue dead events again: one by id, or --all."""
    if (event_id is None) == (not replay_all):
        fail("give an event id or --all, not both")
    if event_id is not None:
        _replay_one(event_id)
        return

    async def work(connection: AsyncConnection, _db: Database) -> Any:
        return await replay_dead_events(connection, SystemClock().now())

    out.print(f"{run_in_transaction(work)} dead events are queued again.")


# --- simulation ----------------------------------------------------------------------------


@simulate_app.command("dm")
def simulate_dm(
    page_id: Annotated[str, typer.Option(help="The Instagram account the DM is sent to.")],
    sender: Annotated[str, typer.Option(help="The patient's Instagram-scoped id.")],
    text: Annotated[str, typer.Option(help="The message text.")],
    url: Annotated[str, typer.Option(help="The instance's webhook URL.")] = (
        "http://127.0.0.1:8000/webhooks/instagram"
    ),
) -> None:
    """Sign a one-message delivery with the configured app secret and post it."""
    settings = load_settings()
    if not settings.app_secrets:
        fail("FRONTDESK_APP_SECRETS is not set (and ./var/ holds none)")
    body = encode(dm_delivery(page_id=page_id, sender=sender, text=text))
    try:
        response = httpx2.post(
            url, content=body, headers=signed_headers(body, settings.app_secrets[0])
        )
    except httpx2.TransportError:
        fail(f"could not reach {url}")
    out.print(f"{response.status_code} {response.text}")
    if response.status_code != 200:
        fail("the instance did not accept the delivery")
