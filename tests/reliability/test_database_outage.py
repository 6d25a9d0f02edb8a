"""PostgreSQL out of reach for a while, under intake load: `frontdesk api` and `frontdesk worker`
reach the database through a loopback proxy that the test cuts and restores."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url
from starlette.requests import Request
from starlette.responses import JSONResponse

from frontdesk.crypto import Keyring
from tests.reliability.harness import (
    SHORT_LEASE,
    Answer,
    Dm,
    FaultReport,
    FaultyGraphApi,
    Kill,
    Ledger,
    deliver_until_accepted,
    delivery_body,
    describe_doubles,
    doubles_per_kill,
    duplicate_sends,
    free_port,
    http_client,
    link_doctors,
    make_instance,
    now_ms,
    outcome_of,
    post_delivery,
    processes,
    report,
    sized,
)
from tests.reliability.tcp_proxy import TcpProxy, proxy_to

PAGES = ("17841400000000201", "17841400000000202")
POSTERS = sized(4, 8)
PACE = 0.15  # seconds between one poster's deliveries
INTAKE_TIMEOUT = 2.0  # FRONTDESK_INTAKE_DB_TIMEOUT_SECONDS, the default
SLACK = 0.5  # scheduling on a loaded 2-core machine


@dataclass(frozen=True)
class Posted:
    dm: Dm
    body: bytes
    started: float
    answer: Answer


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["refused", "stalled"])
async def test_intake_answers_503_quickly_while_the_database_is_away_and_loses_nothing(
    mode: str, postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    """refused: the server is down (connections closed, new ones refused); stalled: a network
    partition (connections open, no byte moves) that heals."""
    outage = float(sized(3, 10))
    before, after = float(sized(1, 5)), float(sized(2, 10))
    await link_doctors(postgres_url, keyring, PAGES)
    direct = make_url(postgres_url)
    fake = FaultyGraphApi()
    ledger = Ledger(postgres_url)
    started = time.monotonic()
    try:
        with proxy_to(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
            proxied = direct.set(host="127.0.0.1", port=proxy.port)
            async with fake.serve() as graph_url, http_client(seconds=10) as http:
                instance = make_instance(
                    proxied.render_as_string(hide_password=False),
                    encryption_key,
                    tmp_path,
                    **SHORT_LEASE,
                    retry_delays="1,2,4,8,16",
                    intake_db_timeout_seconds=str(INTAKE_TIMEOUT),
                    graph_url=graph_url,
                )
                async with processes(tmp_path / "logs") as group:
                    port = free_port()
                    await group.start_server(instance, "api", port)
                    group.start_worker(instance)
                    url = f"http://127.0.0.1:{port}/webhooks/instagram"
                    posted: list[Posted] = []
                    stop = asyncio.Event()
                    senders = itertools.count()
                    posters = [
                        asyncio.create_task(keep_posting(http, url, senders, posted, stop))
                        for _ in range(POSTERS)
                    ]
                    await asyncio.sleep(before)
                    cut_at = time.monotonic()
                    proxy.cut() if mode == "refused" else proxy.stall()
                    await asyncio.sleep(outage)
                    proxy.restore()
                    restored_at = time.monotonic()
                    await asyncio.sleep(after)
                    stop.set()
                    await asyncio.gather(*posters)
                    # Meta delivers what got a 503 (or no answer) again, until it is taken.
                    deadline = time.monotonic() + 60
                    redelivered = [
                        await deliver_until_accepted(http, url, item.body, deadline=deadline)
                        for item in posted
                        if item.answer.status != 200
                    ]
                    drained = await ledger.wait_until_drained(sized(60, 120))
                    logs = group.logs()
        outcome = await outcome_of(ledger, (item.dm.event_key for item in posted))
        acknowledged_first = [item.dm.event_key for item in posted if item.answer.status == 200]
        first_outcome = await outcome_of(ledger, acknowledged_first)
        inbound_rows, inbound_mids = await ledger.inbound_messages()
    finally:
        ledger.close()

    during = [item for item in posted if cut_at <= item.started < restored_at]
    statuses = Counter(item.answer.status for item in posted)
    during_statuses = Counter(item.answer.status for item in during)
    slowest = max((item.answer.latency for item in during), default=0.0)
    recovered_after = min(
        (
            item.started + item.answer.latency - restored_at
            for item in posted
            if item.started >= restored_at and item.answer.status == 200
        ),
        default=float("inf"),
    )
    doubles = duplicate_sends(fake.sends_per_recipient())
    # Sends Meta accepted just as the database went: recorded later, never sent again.
    [at_the_cut] = doubles_per_kill(fake, [Kill(cut_at, 0.0)])
    report(
        FaultReport(
            fault=f"database {mode} for {outage:.0f} s under intake load",
            database="postgresql",
            load=f"{len(posted)} deliveries by {POSTERS} posters over "
            f"{before + outage + after:.0f} s",
            injected=f"cut {proxy.connections_cut} connections, refused new ones"
            if mode == "refused"
            else "every connection stalled, then resumed",
            acknowledged=first_outcome.acknowledged,
            processed=first_outcome.processed,
            lost=len(first_outcome.lost),
            duplicate_sends=f"{doubles} ({at_the_cut} accepted by Meta as the database went)",
            seconds=time.monotonic() - started,
            notes=f"answers {dict(statuses)}; during the cut {dict(during_statuses)}, "
            f"slowest {slowest:.2f} s; 200 again {recovered_after:.2f} s after restore; "
            f"{len(redelivered)} redelivered, all stored: {outcome.lost == []}",
        )
    )
    assert set(statuses) <= {200, 503}, f"only 200 or 503, never a 500 or no answer: {statuses}"
    assert during_statuses[503] > 0, "the cut really took the database away"
    assert slowest < INTAKE_TIMEOUT + SLACK, f"a 503 took {slowest:.2f} s"
    assert recovered_after < 5, "intake recovered by itself"
    assert all(answer.status == 200 for answer, _refused in redelivered)
    assert drained, f"the queue did not drain\n{logs}"
    assert first_outcome.lost == [], f"acknowledged, not processed: {first_outcome.other_statuses}"
    assert outcome.lost == [], "redelivered events were processed too"
    assert inbound_rows == inbound_mids == len(posted)
    assert doubles == 0, describe_doubles(fake, [Kill(cut_at, 0.0)])


async def keep_posting(
    http: httpx2.AsyncClient,
    url: str,
    senders: itertools.count[int],
    posted: list[Posted],
    stop: asyncio.Event,
) -> None:
    """Post one new patient's first message after another until told to stop."""
    while not stop.is_set():
        number = next(senders)
        dm = Dm(
            PAGES[number % len(PAGES)],
            str(7_100_000_000_000_000 + number),
            f"m_outage_{number}",
            now_ms(),
        )
        body = delivery_body([dm])
        started = time.monotonic()
        answer = await post_delivery(http, url, body)
        posted.append(Posted(dm, body, started, answer))
        await asyncio.sleep(PACE)


class CutsTheDatabaseWhenItAnswers(FaultyGraphApi):
    """Meta accepts the first send; the database drops away as the answer travels back."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__()
        self.proxy = proxy
        self.cut_at: float | None = None

    async def _handle_send(self, request: Request) -> JSONResponse:
        response = await super()._handle_send(request)
        if self.cut_at is None and response.status_code == 200:
            self.proxy.cut()
            self.cut_at = time.monotonic()
        return response


@dataclass(frozen=True)
class CutOnAnswer:
    fake: CutsTheDatabaseWhenItAnswers
    drained: bool
    logs: str  # every line every process wrote


async def cut_the_database_as_meta_answers(
    postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path, dm: Dm, *, away: float
) -> CutOnAnswer:
    """One patient's message; the worker reaches PostgreSQL through the proxy, which is cut the
    moment the fake Graph API accepts the reply, for `away` seconds."""
    await link_doctors(postgres_url, keyring, PAGES[:1])
    direct = make_url(postgres_url)
    ledger = Ledger(postgres_url)
    try:
        with proxy_to(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
            proxied = direct.set(host="127.0.0.1", port=proxy.port)
            fake = CutsTheDatabaseWhenItAnswers(proxy)
            async with fake.serve() as graph_url, http_client() as http:
                instance = make_instance(
                    postgres_url,
                    encryption_key,
                    tmp_path,
                    **SHORT_LEASE,
                    retry_delays="1,2,4",
                    graph_url=graph_url,
                )
                async with processes(tmp_path / "logs") as group:
                    port = free_port()
                    await group.start_server(instance, "api", port)
                    url = f"http://127.0.0.1:{port}/webhooks/instagram"
                    assert (await post_delivery(http, url, delivery_body([dm]))).status == 200
                    group.start_worker(
                        instance, database_url=proxied.render_as_string(hide_password=False)
                    )
                    deadline = time.monotonic() + 30
                    while fake.cut_at is None and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(away)
                    proxy.restore()
                    drained = await ledger.wait_until_drained(30)
                    await asyncio.sleep(1)  # whatever is sent again arrives by now
        return CutOnAnswer(fake, drained, group.logs(tail=None))
    finally:
        ledger.close()


@pytest.mark.postgres
async def test_a_reply_meta_accepted_is_sent_once_though_the_database_drops_before_recording(
    postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    dm = Dm(PAGES[0], "7150000000000000", "m_cut_on_answer", now_ms())
    run = await cut_the_database_as_meta_answers(
        postgres_url, encryption_key, keyring, tmp_path, dm, away=3
    )

    assert run.fake.cut_at is not None, "the reply was sent"
    assert run.drained, run.logs
    assert len(run.fake.sends_to(dm.sender)) == 1, "Meta had accepted it: one copy only"


@pytest.mark.postgres
async def test_a_write_retried_while_the_database_is_away_logs_no_patient_id(
    postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    dm = Dm(PAGES[0], "7160000000000000", "m_cut_for_logs", now_ms())
    run = await cut_the_database_as_meta_answers(
        postgres_url, encryption_key, keyring, tmp_path, dm, away=1
    )

    assert run.fake.cut_at is not None, "the reply was sent and its record retried"
    assert dm.sender not in run.logs, "the patient's Instagram-scoped id reached a log"
    assert "hello from" not in run.logs, "message text reached a log"
