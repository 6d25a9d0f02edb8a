"""Two `frontdesk worker` processes drain a PostgreSQL queue while the test SIGKILLs one at a
random moment, again and again, starting a fresh one each time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from frontdesk.crypto import Keyring
from tests.reliability.harness import (
    SHORT_LEASE,
    SHORT_LEASE_LABEL,
    FaultReport,
    FaultyGraphApi,
    Kill,
    Ledger,
    batched,
    conversations,
    deliver_until_accepted,
    delivery_body,
    describe_doubles,
    doubles_per_kill,
    duplicate_sends,
    free_port,
    http_client,
    link_doctors,
    make_instance,
    outcome_of,
    processes,
    report,
    rng_for,
    sized,
)

PAGES = ("17841400000000101", "17841400000000102", "17841400000000103", "17841400000000104")
KILLS = 3
CONCURRENCY = 4


@pytest.mark.postgres
async def test_killed_workers_lose_no_acknowledged_event_and_send_each_reply_once(
    postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    events = sized(300, 5000)
    dms = conversations(PAGES, events // 2, 2, tag="kill")
    rng = rng_for("worker-kills")
    await link_doctors(postgres_url, keyring, PAGES)
    fake = FaultyGraphApi()
    ledger = Ledger(postgres_url)
    started = time.monotonic()
    kills: list[Kill] = []
    try:
        async with fake.serve() as graph_url:
            instance = make_instance(
                postgres_url,
                encryption_key,
                tmp_path,
                **SHORT_LEASE,
                retry_delays="1,2,3",
                graph_url=graph_url,
            )
            async with processes(tmp_path / "logs") as group:
                port = free_port()
                await group.start_server(instance, "api", port)
                acknowledged = await post_all(port, [delivery_body(b) for b in batched(dms, 50)])
                assert acknowledged == len(dms), "intake took every delivery"
                workers = {group.start_worker(instance, CONCURRENCY): time.monotonic()}
                workers.update({group.start_worker(instance, CONCURRENCY): time.monotonic()})
                moments = sorted(rng.uniform(0.1, 0.8) for _ in range(KILLS))
                deadline = time.monotonic() + sized(120, 600)
                while moments and time.monotonic() < deadline:
                    progress = (await ledger.statuses())["processed"] / len(dms)
                    # A worker that has not finished starting holds nothing worth killing.
                    warm = [w for w, since in workers.items() if time.monotonic() - since > 1.5]
                    if progress >= moments[0] and warm:
                        moments.pop(0)
                        await asyncio.sleep(rng.uniform(0, 0.2))
                        victim = rng.choice(warm)
                        held = await ledger.in_flight_of(victim.pid)
                        group.kill(victim)
                        kills.append(Kill(time.monotonic(), progress, held))
                        del workers[victim]
                        workers[group.start_worker(instance, CONCURRENCY)] = time.monotonic()
                    await asyncio.sleep(0.02)
                drained = await ledger.wait_until_drained(max(1.0, deadline - time.monotonic()))
                logs = group.logs()
        outcome = await outcome_of(ledger, (dm.event_key for dm in dms))
        inbound_rows, inbound_mids = await ledger.inbound_messages()
    finally:
        ledger.close()

    sends = fake.sends_per_recipient()
    doubles = duplicate_sends(sends)
    per_kill = doubles_per_kill(fake, kills)
    patients = {dm.sender for dm in dms}
    report(
        FaultReport(
            fault=f"worker SIGKILL (2 workers, {SHORT_LEASE_LABEL})",
            database="postgresql",
            load=f"{len(dms)} events, {len(patients)} conversations",
            injected=f"{len(kills)} SIGKILLs, holding "
            + "/".join(str(kill.held) for kill in kills)
            + " events",
            acknowledged=outcome.acknowledged,
            processed=outcome.processed,
            lost=len(outcome.lost),
            duplicate_sends=f"{doubles} (per kill: {'/'.join(map(str, per_kill))})",
            seconds=time.monotonic() - started,
            notes=f"inbound rows {inbound_rows} = distinct mids {inbound_mids}",
        )
    )
    assert len(kills) == KILLS, "every kill landed while the queue was draining"
    assert drained, f"the queue did not drain in time\n{logs}"
    assert outcome.lost == [], f"acknowledged but not processed: {outcome.other_statuses}"
    assert inbound_rows == inbound_mids == len(dms)
    assert set(sends) == patients, "every new conversation got its greeting"
    assert sum(per_kill) == doubles, (
        "every double send is a crash between Meta's answer and our commit: its first copy "
        f"was answered just before a kill ({per_kill} of {doubles})\n"
        + describe_doubles(fake, kills)
    )
    assert all(count <= kill.held for count, kill in zip(per_kill, kills, strict=True))


async def post_all(port: int, bodies: list[bytes]) -> int:
    """Post every body (a few at a time, as Meta does) until accepted; returns events stored."""
    url = f"http://127.0.0.1:{port}/webhooks/instagram"
    limit = asyncio.Semaphore(8)
    deadline = time.monotonic() + 120

    async with http_client() as http:

        async def one(body: bytes) -> int:
            async with limit:
                answer, _refused = await deliver_until_accepted(http, url, body, deadline=deadline)
            assert answer.status == 200, answer
            return answer.events

        return sum(await asyncio.gather(*(one(body) for body in bodies)))
