"""The embedded deployment (`frontdesk serve` on one SQLite file) SIGKILLed while it takes
deliveries and drains them, then started again on the same file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from frontdesk.crypto import Keyring
from tests.reliability.harness import (
    SHORT_LEASE,
    SHORT_LEASE_LABEL,
    Dm,
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

PAGES = ("17841400000000601", "17841400000000602")


async def test_the_embedded_process_killed_mid_drain_loses_no_acknowledged_event(
    sqlite_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    events = sized(200, 1000)
    kill_count = sized(1, 3)
    dms = conversations(PAGES, events // 2, 2, tag="embedded")
    rng = rng_for("embedded-kill")
    await link_doctors(sqlite_url, keyring, PAGES)
    fake = FaultyGraphApi()
    ledger = Ledger(sqlite_url)
    started = time.monotonic()
    kills: list[Kill] = []
    try:
        async with fake.serve() as graph_url, http_client(seconds=10) as http:
            instance = make_instance(
                sqlite_url,
                encryption_key,
                tmp_path,
                **SHORT_LEASE,
                retry_delays="1,2,3",
                graph_url=graph_url,
            )
            async with processes(tmp_path / "logs") as group:
                port = free_port()
                server = await group.start_server(instance, "serve", port)
                endpoint = f"http://127.0.0.1:{port}/webhooks/instagram"
                acknowledged: list[Dm] = []
                # Meta keeps delivering while the process dies: what gets no 200 comes again.
                deadline = time.monotonic() + sized(120, 600)
                limit = asyncio.Semaphore(2)
                refusals: list[int] = []

                async def deliver(batch: list[Dm]) -> None:
                    async with limit:
                        answer, refused = await deliver_until_accepted(
                            http, endpoint, delivery_body(batch), deadline=deadline, pause=0.5
                        )
                        # Paced so that deliveries keep coming while the queue drains.
                        await asyncio.sleep(0.15)
                    refusals.append(len(refused))
                    if answer.status == 200:
                        acknowledged.extend(batch)

                posting = asyncio.create_task(
                    asyncio.wait([asyncio.create_task(deliver(b)) for b in batched(dms, 10)])
                )
                moments = sorted(rng.uniform(0.2, 0.7) for _ in range(kill_count))
                while moments and time.monotonic() < deadline:
                    counts = await ledger.statuses()
                    if counts["processed"] >= moments[0] * len(dms):
                        moments.pop(0)
                        await asyncio.sleep(rng.uniform(0, 0.2))
                        group.kill(server)
                        kills.append(Kill(time.monotonic(), counts["processed"] / len(dms)))
                        server = await group.start_server(instance, "serve", port)
                    await asyncio.sleep(0.02)
                await posting
                drained = await ledger.wait_until_drained(max(1.0, deadline - time.monotonic()))
                logs = group.logs()
        outcome = await outcome_of(ledger, (dm.event_key for dm in acknowledged))
        everything = await outcome_of(ledger, (dm.event_key for dm in dms))
        inbound_rows, inbound_mids = await ledger.inbound_messages()
    finally:
        ledger.close()

    sends = fake.sends_per_recipient()
    doubles = duplicate_sends(sends)
    per_kill = doubles_per_kill(fake, kills)
    report(
        FaultReport(
            fault=f"embedded serve SIGKILL + restart ({SHORT_LEASE_LABEL})",
            database="sqlite",
            load=f"{len(dms)} events posted while draining",
            injected=f"{len(kills)} SIGKILLs at "
            + "/".join(f"{kill.progress:.0%}" for kill in kills)
            + " processed",
            acknowledged=outcome.acknowledged,
            processed=outcome.processed,
            lost=len(outcome.lost),
            duplicate_sends=f"{doubles} (per kill: {'/'.join(map(str, per_kill))})",
            seconds=time.monotonic() - started,
            notes=f"inbound rows {inbound_rows} = distinct mids {inbound_mids}; "
            f"{sum(refusals)} posts got no answer or a 503 during restarts (posted again)",
        )
    )
    assert len(kills) == kill_count, "every kill landed mid-drain"
    assert drained, f"the queue did not drain\n{logs}"
    assert outcome.lost == [], f"acknowledged but not processed: {outcome.other_statuses}"
    assert everything.lost == [], "what was refused during the restart was taken later"
    assert inbound_rows == inbound_mids == len(dms)
    assert set(sends) == {dm.sender for dm in dms}
    assert sum(per_kill) == doubles, (
        "every double send is a crash right after Meta's answer\n" + describe_doubles(fake, kills)
    )
