"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when configured), a fixed clock,
the fake Graph API, a runtime wired to both, and an HTTP client for the app."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx2
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.app import create_app
from frontdesk.auth.accounts import create_account
from frontdesk.auth.api_tokens import create_api_token
from frontdesk.clinic.connections import link_instagram
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clock import FixedClock
from frontdesk.config import Settings
from frontdesk.crypto import generate_key_spec
from frontdesk.db.engine import create_engine as create_async_engine_for
from frontdesk.db.engine import sync_url, transaction
from frontdesk.db.migrate import upgrade_to_head
from frontdesk.db.tables import audit_logs, metadata
from frontdesk.logs import clear_context, configure_logging
from frontdesk.runtime import Runtime
from frontdesk.testing.fake_graph import FakeGraphApi
from frontdesk.testing.payloads import encode
from frontdesk.testing.signing import signed_headers
from tests.canaries import SUITE

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POSTGRES_URL = os.environ.get("FRONTDESK_TEST_DATABASE_URL", "")
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
APP_SECRETS = ("an-old-secret", APP_SECRET)
for _secret in (*APP_SECRETS, VERIFY_TOKEN, "ig-app-secret", "fb-app-secret"):
    SUITE.add(_secret, "secret")


SUITE_LOG: list[Path] = []  # the session's log file, once the first test has started
_SUITE_STREAM: list[IO[str]] = []


class _Tee:
    """Writes to the session's log file and to the test's captured output (shown on failure)."""

    def __init__(self, *streams: IO[str]) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


@pytest.fixture(scope="session")
def suite_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IO[str]]:
    path = tmp_path_factory.getbasetemp() / "suite.log"
    SUITE_LOG.append(path)
    with path.open("w") as stream:
        _SUITE_STREAM.append(stream)
        yield stream


@pytest.fixture(autouse=True)
def logs_through_the_product_pipeline(suite_log: IO[str]) -> None:
    """Every test logs as `frontdesk serve` does, at DEBUG, into the session's log file, which
    the canary check reads when the session ends (see tests/canaries.py)."""
    log_into_the_suite()


def log_into_the_suite() -> None:
    """Product logging into the session's log file and the test's captured output."""
    configure_logging("DEBUG", json=True, stream=_Tee(_SUITE_STREAM[0], sys.stdout))


@contextmanager
def logging_into(stream: IO[str], level: str = "DEBUG") -> Iterator[None]:
    """Product logging into `stream` for a while, then back into the session's log file."""
    configure_logging(level, json=True, stream=stream)
    try:
        yield
    finally:
        clear_context()
        log_into_the_suite()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if not SUITE_LOG:
        return
    with SUITE_LOG[0].open(errors="replace") as log:
        findings = SUITE.lines_holding_any(log)
    if not findings:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", "canary check failed", red=True)
        for number, kinds in findings[:50]:
            reporter.write_line(f"{SUITE_LOG[0]}:{number}: holds a {', '.join(sorted(kinds))}")


def ms(moment: datetime) -> int:
    """A Meta timestamp (milliseconds since the epoch)."""
    return int(moment.timestamp() * 1000)


def recent_ms(seconds_ago: float = 5.0) -> int:
    return ms(NOW - timedelta(seconds=seconds_ago))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "frontdesk.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    if not POSTGRES_URL:
        pytest.skip("FRONTDESK_TEST_DATABASE_URL is not set")
    upgrade_to_head(POSTGRES_URL)
    return POSTGRES_URL


def _truncate_postgres(url: str) -> None:
    engine = create_engine(sync_url(url))
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "frontdesk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_migrated")
    _truncate_postgres(url)
    yield url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    encryption_key = generate_key_spec()
    SUITE.add(encryption_key, "encryption key")
    return Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        app_secrets=list(APP_SECRETS),
        verify_token=VERIFY_TOKEN,
        encryption_keys=[encryption_key],
        graph_api_url="http://graph.instagram.test",
        facebook_graph_api_url="http://graph.facebook.test",
        instagram_authorize_url="http://www.instagram.test/oauth/authorize",
        instagram_oauth_url="http://api.instagram.test",
        facebook_authorize_url="http://www.facebook.test",
        instagram_app_id="ig-app",
        instagram_app_secret="ig-app-secret",
        facebook_app_id="fb-app",
        facebook_app_secret="fb-app-secret",
        public_url="http://frontdesk.test",
        retry_delays=[60, 300, 900],
    )


@pytest.fixture
def fake_graph() -> FakeGraphApi:
    return FakeGraphApi()


@pytest.fixture
async def runtime(
    settings: Settings, clock: FixedClock, fake_graph: FakeGraphApi
) -> AsyncIterator[Runtime]:
    instance = Runtime.build(
        settings,
        clock=clock,
        graph_transport=httpx2.ASGITransport(app=fake_graph.app),
        worker_id="test-worker",
    )
    yield instance
    SUITE.add_fake_graph(fake_graph)
    await _assert_no_canary_in_audit_rows(instance)
    await instance.stop()


async def _assert_no_canary_in_audit_rows(runtime: Runtime) -> None:
    async with unscoped(runtime) as connection:
        rows = (await connection.execute(select(audit_logs))).all()
    leaks = {kind for row in rows for kind in SUITE.found_in(repr(tuple(row)))}
    assert not leaks, f"an audit row holds a {', '.join(sorted(leaks))}"


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
    ) as http:
        yield http


async def post_delivery(
    client: httpx2.AsyncClient, payload: object, *, secret: str = APP_SECRET
) -> httpx2.Response:
    SUITE.add_payload(payload)
    body = encode(payload)
    return await client.post(
        "/webhooks/instagram", content=body, headers=signed_headers(body, secret)
    )


@asynccontextmanager
async def unscoped(runtime: Runtime) -> AsyncIterator[AsyncConnection]:
    """The database as its owner sees it, without row-level security: for assertions only."""
    engine = create_async_engine_for(runtime.settings.resolved_database_url())
    try:
        async with transaction(engine) as connection:
            yield connection
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class LinkedDoctor:
    id: str
    page_id: str
    token: str
    email: str


async def add_linked_doctor(
    runtime: Runtime, *, name: str, page_id: str, token: str, facebook_page_id: str | None = None
) -> LinkedDoctor:
    async with transaction(runtime.engine) as connection:
        doctor = await create_doctor(
            connection, name=name, email=f"{page_id}@clinic.test", now=runtime.clock.now()
        )
        await link_instagram(
            connection,
            runtime.keyring,
            doctor_id=doctor.id,
            instagram_page_id=page_id,
            facebook_page_id=facebook_page_id,
            access_token=token,
            now=runtime.clock.now(),
        )
    return LinkedDoctor(id=doctor.id, page_id=page_id, token=token, email=doctor.email)


PASSWORD = "correct horse battery"


async def give_account(runtime: Runtime, doctor: LinkedDoctor) -> str:
    """A sign-in account (password PASSWORD) for the doctor, and an API token; returns the token."""
    async with transaction(runtime.engine) as connection:
        await create_account(
            connection,
            email=doctor.email,
            role="doctor",
            doctor_id=doctor.id,
            password=PASSWORD,
            now=runtime.clock.now(),
        )
        _record, api_token = await create_api_token(
            connection, doctor_id=doctor.id, name="tests", now=runtime.clock.now()
        )
    return api_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
