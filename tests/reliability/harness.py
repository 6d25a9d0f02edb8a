"""What the fault-injection scenarios share: sizes, real `frontdesk` processes, a fake Graph API
that fails at random and remembers every attempt, signed deliveries, database counts, the report.

Every process started here is a child of the test, on loopback, and is killed when the scenario
ends, whatever happened in it. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse

from frontdesk.clinic.connections import link_instagram
from frontdesk.clinic.doctors import create_doctor
from frontdesk.crypto import Keyring
from frontdesk.db.engine import create_engine as create_async_engine_for
from frontdesk.db.engine import sync_url, transaction
from frontdesk.db.tables import messages, webhook_deliveries, webhook_events
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from frontdesk.testing.signing import signed_headers
from tests.conftest import POSTGRES_URL

LONG = os.environ.get("FRONTDESK_RELIABILITY", "").lower() == "long"
SEED = int(os.environ.get("FRONTDESK_RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
APP_SECRET = "reliability-app-secret"
VERIFY_TOKEN = "reliability-verify-token"
OPEN = ("queued", "processing")


def scenario_databases() -> list[Any]:
    """SQLite and PostgreSQL in the long run; in the short one, the configured database only
    (PostgreSQL when FRONTDESK_TEST_DATABASE_URL is set, else SQLite), to keep it short."""
    postgresql = pytest.param("postgresql", marks=pytest.mark.postgres)
    if LONG:
        return ["sqlite", postgresql]
    return [postgresql] if POSTGRES_URL else ["sqlite"]


def sized(short: int, long: int) -> int:
    """The short size in the normal suite, the long one under FRONTDESK_RELIABILITY=long."""
    return long if LONG else short


def rng_for(name: str) -> random.Random:
    """A random source per scenario, reproducible with FRONTDESK_RELIABILITY_SEED."""
    return random.Random(f"{SEED}:{name}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the report ------------------------------------------------------------------------------


@dataclass
class FaultReport:
    """One row of the table printed at the end of the run."""

    fault: str
    database: str
    load: str
    injected: str
    acknowledged: int
    processed: int
    lost: int
    duplicate_sends: str
    seconds: float
    notes: str = ""


REPORTS: list[FaultReport] = []
COLUMNS = (
    "fault",
    "db",
    "load",
    "faults injected",
    "acknowledged",
    "processed",
    "lost",
    "duplicate sends",
    "seconds",
    "notes",
)


def report(row: FaultReport) -> None:
    REPORTS.append(row)


def render_table(rows: Sequence[FaultReport]) -> str:
    cells = [
        [
            row.fault,
            row.database,
            row.load,
            row.injected,
            str(row.acknowledged),
            str(row.processed),
            str(row.lost),
            row.duplicate_sends,
            f"{row.seconds:.1f}",
            row.notes,
        ]
        for row in rows
    ]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    mode = "long" if LONG else "short"
    return f"Reliability ({mode} run, seed {SEED})\n\n" + "\n".join(lines) + "\n"


# --- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """What every `frontdesk` process of one scenario shares: database, keys, secrets."""

    database_url: str
    encryption_key: str
    var_dir: Path
    graph_url: str = "http://127.0.0.1:1"
    settings: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FRONTDESK_")}
        env.update(
            FRONTDESK_DATABASE_URL=self.database_url,
            FRONTDESK_ENCRYPTION_KEYS=self.encryption_key,
            FRONTDESK_APP_SECRETS=APP_SECRET,
            FRONTDESK_VERIFY_TOKEN=VERIFY_TOKEN,
            FRONTDESK_VAR_DIR=str(self.var_dir),
            FRONTDESK_GRAPH_API_URL=self.graph_url,
            FRONTDESK_FACEBOOK_GRAPH_API_URL=self.graph_url,
            FRONTDESK_WORKER_POLL_SECONDS="0.05",
            FRONTDESK_LOG_LEVEL="WARNING",
        )
        env.update({f"FRONTDESK_{name.upper()}": value for name, value in self.settings.items()})
        env.update({f"FRONTDESK_{name.upper()}": value for name, value in overrides.items()})
        return env


# The leases of the crash scenarios: short, so that a killed worker's events come back soon, and
# as short as the settings allow with a 1 s Graph timeout (1 s + 5.5 s for the write that
# records a send), plus 1.5 s of recording patience.
SHORT_LEASE = {"lease_seconds": "8", "graph_timeout_seconds": "1"}
SHORT_LEASE_LABEL = f"lease {SHORT_LEASE['lease_seconds']} s"


def make_instance(
    url: str, key: str, tmp_path: Path, *, graph_url: str = Instance.graph_url, **settings: str
) -> Instance:
    return Instance(
        database_url=url,
        encryption_key=key,
        var_dir=tmp_path / "var",
        graph_url=graph_url,
        settings=settings,
    )


class Processes:
    """The `frontdesk` processes of one scenario; `close()` ends every one still running."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(self, instance: Instance, *args: str, **settings: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{args[0]}-{len(self.started)}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "frontdesk", *args],
            env=instance.env(**settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started.append(process)
        return process

    def start_worker(
        self, instance: Instance, concurrency: int = 4, **settings: str
    ) -> subprocess.Popen[bytes]:
        return self.start(instance, "worker", "--concurrency", str(concurrency), **settings)

    async def start_server(
        self, instance: Instance, command: str, port: int, **settings: str
    ) -> subprocess.Popen[bytes]:
        """`frontdesk serve` or `frontdesk api` on 127.0.0.1:port; returns once it is ready."""
        process = self.start(instance, command, "--port", str(port), **settings)
        await wait_until_ready(port, process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    @property
    def running(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in self.started if process.poll() is None]

    async def close(self) -> None:
        """SIGTERM to every process still running, SIGKILL to any still there after 15 s. The
        event loop keeps turning meanwhile: a process may be waiting for the fake Graph API."""
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self.running and time.monotonic() < deadline:  # noqa: ASYNC110 - polls processes
            await asyncio.sleep(0.05)
        for process in self.running:
            self.kill(process)
        for log in self._logs:
            log.close()

    def logs(self, tail: int | None = 4000) -> str:
        """Every process's output, the last `tail` characters of each (all with None)."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name}\n{text if tail is None else text[-tail:]}")
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def processes(log_dir: Path) -> AsyncIterator[Processes]:
    group = Processes(log_dir)
    try:
        yield group
    finally:
        await group.close()


async def wait_until_ready(port: int, process: subprocess.Popen[bytes], within: float = 40) -> None:
    deadline = time.monotonic() + within
    async with httpx2.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"frontdesk on port {port} exited with {process.returncode}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"frontdesk on port {port} was not ready in {within} s")


# --- the fake Graph API, failing at random ---------------------------------------------------


@dataclass(frozen=True)
class SendAttempt:
    """One request to the Send API as the fake saw it (monotonic times)."""

    recipient_id: str
    arrived: float
    answered: float
    fault: str | None
    delivered: bool
    retry_after: float | None = None


@dataclass
class FaultMix:
    """Per-attempt probabilities; no recipient gets more than `max_faults_each` faults, so that
    every reply can be delivered within the worker's retry budget."""

    error_500: float = 0.0
    rate_limited: float = 0.0
    hang: float = 0.0
    retry_after_seconds: int = 7
    hang_seconds: float = 2.0
    max_faults_each: int = 10


class FaultyGraphApi(FakeGraphApi):
    """The fake Graph API, drawing a fault for each Send request from `mix` (scripted through
    the fake's own `fail_next` and `hang_next`), and keeping every attempt with its times."""

    def __init__(self, mix: FaultMix | None = None, rng: random.Random | None = None) -> None:
        super().__init__()
        self.mix = mix or FaultMix()
        self.rng = rng or random.Random(SEED)
        self.log: list[SendAttempt] = []
        self.injected: Counter[str] = Counter()
        self._faults_of: Counter[str] = Counter()

    async def _handle_send(self, request: Request) -> JSONResponse:
        arrived = time.monotonic()
        recipient = _recipient_of(await request.body())
        fault = self._draw(recipient)
        # The script is consumed before the fake's handler first awaits, so this request
        # (and no other) gets the fault queued here.
        if fault == "500":
            self.fail_next(1, status=500, code=2)
        elif fault == "429":
            retry_after = str(self.mix.retry_after_seconds)
            self.fail_next(1, status=429, code=4, headers={"Retry-After": retry_after})
        elif fault == "hang":
            self.hang_next(1, seconds=self.mix.hang_seconds)
        response = await super()._handle_send(request)
        self.log.append(
            SendAttempt(
                recipient_id=recipient,
                arrived=arrived,
                answered=time.monotonic(),
                fault=fault,
                delivered=response.status_code == 200,
                retry_after=float(self.mix.retry_after_seconds) if fault == "429" else None,
            )
        )
        return response

    def _draw(self, recipient: str) -> str | None:
        if self._faults_of[recipient] >= self.mix.max_faults_each:
            return None
        draw = self.rng.random()
        fault = None
        for name, share in (
            ("500", self.mix.error_500),
            ("429", self.mix.rate_limited),
            ("hang", self.mix.hang),
        ):
            if draw < share:
                fault = name
                break
            draw -= share
        if fault is not None:
            self._faults_of[recipient] += 1
            self.injected[fault] += 1
        return fault

    def sends_per_recipient(self) -> Counter[str]:
        return Counter(send.recipient_id for send in self.sends)

    def unknowable_deliveries(self) -> Counter[str]:
        """Sends the fake made after hanging past the client's timeout, per recipient: the
        client saw a timeout, Meta delivered anyway."""
        return Counter(
            attempt.recipient_id
            for attempt in self.log
            if attempt.fault == "hang" and attempt.delivered
        )

    def retry_after_margins(self) -> list[float]:
        """For every 429, how much later than its Retry-After the next attempt for the same
        recipient came (negative: too early)."""
        by_recipient: dict[str, list[SendAttempt]] = defaultdict(list)
        for attempt in self.log:
            by_recipient[attempt.recipient_id].append(attempt)
        margins = []
        for attempts in by_recipient.values():
            attempts.sort(key=lambda attempt: attempt.arrived)
            for before, after in itertools.pairwise(attempts):
                if before.retry_after is not None:
                    margins.append(after.arrived - before.answered - before.retry_after)
        return margins


def _recipient_of(body: bytes) -> str:
    try:
        document = json.loads(body)
        return str(document["recipient"]["id"])
    except (ValueError, KeyError, TypeError):
        return ""


def duplicate_sends(sends_per_recipient: Counter[str]) -> int:
    """With one reply per conversation, every send to a patient beyond the first is a double."""
    return sum(count - 1 for count in sends_per_recipient.values() if count > 1)


UNKNOWABLE_WINDOW = 1.0  # seconds from Meta's answer to a kill that left it unrecorded


@dataclass(frozen=True)
class Kill:
    at: float  # monotonic, as the fake's attempt times
    progress: float  # share of the events processed when it came
    held: int = 0  # events the killed process had leased


def doubles_per_kill(fake: FaultyGraphApi, kills: Sequence[Kill]) -> list[int]:
    """Double sends whose earlier copy was on its way at a kill: Meta had it (or was answering)
    when the process died, or had answered at most UNKNOWABLE_WINDOW before, too soon for the
    process to record it as sent (the crash between Meta's answer and our commit). Each is
    counted against the first such kill."""
    per_kill = [0] * len(kills)
    delivered: dict[str, list[SendAttempt]] = defaultdict(list)
    for attempt in fake.log:
        if attempt.delivered:
            delivered[attempt.recipient_id].append(attempt)
    for attempts in delivered.values():
        for earlier in sorted(attempts, key=lambda attempt: attempt.arrived)[:-1]:
            for index, kill in enumerate(kills):
                if earlier.arrived <= kill.at <= earlier.answered + UNKNOWABLE_WINDOW:
                    per_kill[index] += 1
                    break
    return per_kill


def describe_doubles(fake: FaultyGraphApi, kills: Sequence[Kill]) -> str:
    """Each double send's attempts, in seconds relative to the kills (for failure messages)."""
    lines = [f"kills at {[round(kill.at, 3) for kill in kills]}"]
    for recipient, count in fake.sends_per_recipient().items():
        if count > 1:
            attempts = [
                (round(a.arrived, 3), round(a.answered, 3), a.fault, a.delivered)
                for a in fake.log
                if a.recipient_id == recipient
            ]
            lines.append(f"{recipient}: {attempts}")
    return "\n".join(lines)


# --- doctors, deliveries ---------------------------------------------------------------------


async def link_doctors(database_url: str, keyring: Keyring, page_ids: Iterable[str]) -> None:
    """One doctor per page id, each with an active Instagram connection and its own token."""
    engine = create_async_engine_for(database_url)
    now = datetime.now(UTC)
    try:
        async with transaction(engine) as connection:
            for page_id in page_ids:
                doctor = await create_doctor(
                    connection, name=f"Dr {page_id}", email=f"{page_id}@clinic.test", now=now
                )
                await link_instagram(
                    connection,
                    keyring,
                    doctor_id=doctor.id,
                    instagram_page_id=page_id,
                    access_token=f"token-{page_id}",
                    now=now,
                )
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Dm:
    """One inbound text message; its event key is `message:{page_id}:{mid}`."""

    page_id: str
    sender: str
    mid: str
    timestamp: int

    @property
    def event_key(self) -> str:
        return f"message:{self.page_id}:{self.mid}"


def conversations(
    page_ids: Sequence[str], count: int, messages_each: int, *, tag: str, first_sender: int = 0
) -> list[Dm]:
    """`count` new conversations spread over the pages, `messages_each` messages in each, in
    the order they were written."""
    start = now_ms() - 60_000
    dms = []
    for number in range(count):
        page_id = page_ids[number % len(page_ids)]
        sender = str(7_000_000_000_000_000 + first_sender + number)
        for index in range(messages_each):
            dms.append(Dm(page_id, sender, f"m_{tag}_{number}_{index}", start + index * 10))
    return dms


def delivery_body(dms: Sequence[Dm]) -> bytes:
    """One signed-ready webhook body carrying `dms`, one entry per page, as Meta batches them."""
    by_page: dict[str, list[dict[str, object]]] = defaultdict(list)
    for dm in dms:
        by_page[dm.page_id].append(
            payloads.message_item(
                sender=dm.sender,
                recipient=dm.page_id,
                mid=dm.mid,
                text=f"hello from {dm.mid}",
                timestamp=dm.timestamp,
            )
        )
    entries = [
        payloads.entry(page_id, messaging=items, time=max(int(i["timestamp"]) for i in items))  # type: ignore[call-overload]
        for page_id, items in by_page.items()
    ]
    return payloads.encode(payloads.delivery(*entries))


def batched(items: Sequence[Dm], size: int) -> list[list[Dm]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (connection refused or reset, client timeout)
    latency: float
    events: int = 0
    duplicates: int = 0
    error: str = ""
    correlation_id: str = ""


async def post_delivery(http: httpx2.AsyncClient, url: str, body: bytes) -> Answer:
    started = time.monotonic()
    try:
        response = await http.post(url, content=body, headers=signed_headers(body, APP_SECRET))
    except httpx2.TransportError as error:
        return Answer(None, time.monotonic() - started, error=type(error).__name__)
    latency = time.monotonic() - started
    correlation_id = response.headers.get("x-correlation-id", "")
    if response.status_code != 200:
        return Answer(response.status_code, latency, correlation_id=correlation_id)
    answer = response.json()
    return Answer(
        200, latency, int(answer["events"]), int(answer["duplicates"]), "", correlation_id
    )


async def deliver_until_accepted(
    http: httpx2.AsyncClient, url: str, body: bytes, *, deadline: float, pause: float = 0.2
) -> tuple[Answer, list[Answer]]:
    """Post like Meta does: again after a 503 or no answer, until a 200 (or the deadline).
    Returns the last answer and the refused tries before it."""
    refused: list[Answer] = []
    while True:
        answer = await post_delivery(http, url, body)
        if answer.status == 200:
            return answer, refused
        if answer.status not in (None, 503) or time.monotonic() > deadline:
            return answer, refused
        refused.append(answer)
        await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def http_client(seconds: float = 30.0) -> AsyncIterator[httpx2.AsyncClient]:
    """A client for posting deliveries; `seconds` bounds each request (no answer: a hang)."""
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx2.AsyncClient(timeout=seconds, limits=limits) as http:
        yield http


# --- the database, as its owner sees it ------------------------------------------------------


class Ledger:
    """Counts read straight from the database (no row-level security), off the event loop."""

    def __init__(self, database_url: str) -> None:
        self._engine: Engine = create_engine(sync_url(database_url), pool_size=2)

    def close(self) -> None:
        self._engine.dispose()

    async def _run(self, work: Any) -> Any:
        def in_thread() -> Any:
            with self._engine.connect() as connection:
                return work(connection)

        return await asyncio.to_thread(in_thread)

    async def statuses(self) -> Counter[str]:
        rows = await self._run(
            lambda c: c.execute(
                select(webhook_events.c.status, func.count()).group_by(webhook_events.c.status)
            ).all()
        )
        return Counter({status: int(count) for status, count in rows})

    async def open_events(self) -> int:
        counts = await self.statuses()
        return sum(counts[status] for status in OPEN)

    async def event_status_by_key(self) -> dict[str, str]:
        rows = await self._run(
            lambda c: c.execute(select(webhook_events.c.event_key, webhook_events.c.status)).all()
        )
        return dict(rows)

    async def event_rows(self) -> list[Any]:
        return list(await self._run(lambda c: c.execute(select(webhook_events)).all()))

    async def events_stored_by(self, correlation_ids: Iterable[str]) -> int:
        """Events the deliveries with these correlation ids stored (their commit landed)."""
        ids = sorted(set(correlation_ids))
        if not ids:
            return 0
        return int(
            await self._run(
                lambda c: c.execute(
                    select(func.coalesce(func.sum(webhook_deliveries.c.event_count), 0)).where(
                        webhook_deliveries.c.correlation_id.in_(ids)
                    )
                ).scalar_one()
            )
        )

    async def inbound_messages(self) -> tuple[int, int]:
        """(inbound message rows, distinct inbound mids)."""
        row = await self._run(
            lambda c: c.execute(
                select(func.count(), func.count(func.distinct(messages.c.mid))).where(
                    messages.c.direction == "inbound"
                )
            ).one()
        )
        return int(row[0]), int(row[1])

    async def in_flight_of(self, worker_pid: int) -> int:
        """Events leased by the process with this pid (`leased_by` is `host:pid`)."""
        suffix = f"%:{worker_pid}"
        return int(
            await self._run(
                lambda c: c.execute(
                    text(
                        "SELECT count(*) FROM webhook_events "
                        "WHERE status = 'processing' AND leased_by LIKE :suffix"
                    ),
                    {"suffix": suffix},
                ).scalar_one()
            )
        )

    async def wait_until_drained(self, within: float, poll: float = 0.2) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not await self.open_events():
                return True
            await asyncio.sleep(poll)
        return False


@dataclass(frozen=True)
class Outcome:
    """What became of the acknowledged events."""

    acknowledged: int
    processed: int
    lost: list[str]
    other_statuses: Counter[str]


async def outcome_of(ledger: Ledger, acknowledged: Iterable[str]) -> Outcome:
    by_key = await ledger.event_status_by_key()
    keys = set(acknowledged)
    processed = sum(1 for key in keys if by_key.get(key) == "processed")
    lost = sorted(key for key in keys if by_key.get(key) != "processed")
    return Outcome(
        acknowledged=len(keys),
        processed=processed,
        lost=lost,
        other_statuses=Counter(by_key.get(key, "missing") for key in lost),
    )


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
