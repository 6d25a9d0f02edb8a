"""Meta redelivers: the same deliveries arrive three times, all at once, at every intake process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from frontdesk.crypto import Keyring
from tests.reliability.harness import (
    Answer,
    FaultReport,
    FaultyGraphApi,
    Ledger,
    conversations,
    deliver_until_accepted,
    delivery_body,
    duplicate_sends,
    free_port,
    http_client,
    link_doctors,
    make_instance,
    outcome_of,
    post_delivery,
    processes,
    report,
    scenario_databases,
    sized,
)

PAGES = ("17841400000000401", "17841400000000402")
COPIES = 3
IN_FLIGHT = 8  # deliveries at once, each with its three copies
ROUNDS = 3


@pytest.mark.parametrize("database", scenario_databases())
async def test_the_same_deliveries_posted_three_times_at_once_store_one_set_of_events(
    database: str,
    scenario_url: str,
    encryption_key: str,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    count = sized(100, 1000)
    # Each delivery carries a message for each doctor: batches mix tenants.
    dms = conversations(PAGES, count * len(PAGES), 1, tag=f"redelivery_{database}")
    bodies = [delivery_body(dms[start : start + len(PAGES)]) for start in range(0, len(dms), 2)]
    await link_doctors(scenario_url, keyring, PAGES)
    fake = FaultyGraphApi()
    ledger = Ledger(scenario_url)
    started = time.monotonic()
    try:
        async with fake.serve() as graph_url, http_client() as http:
            instance = make_instance(scenario_url, encryption_key, tmp_path, graph_url=graph_url)
            async with processes(tmp_path / "logs") as group:
                # PostgreSQL: two processes, the copies of one delivery land on both.
                ports = [free_port() for _ in range(2 if database == "postgresql" else 1)]
                for port in ports:
                    await group.start_server(instance, "serve", port)
                endpoints = [f"http://127.0.0.1:{port}/webhooks/instagram" for port in ports]
                limit = asyncio.Semaphore(IN_FLIGHT)
                deadline = time.monotonic() + sized(60, 300)

                async def three_copies(body: bytes) -> list[tuple[Answer, list[Answer]]]:
                    async with limit:
                        return list(
                            await asyncio.gather(
                                *(
                                    deliver_until_accepted(
                                        http,
                                        endpoints[copy % len(endpoints)],
                                        body,
                                        deadline=deadline,
                                    )
                                    for copy in range(COPIES)
                                )
                            )
                        )

                answers = [
                    item
                    for copies in await asyncio.gather(*(three_copies(body) for body in bodies))
                    for item in copies
                ]
                drained = await ledger.wait_until_drained(sized(60, 300))
                logs = group.logs()
        outcome = await outcome_of(ledger, (dm.event_key for dm in dms))
        # A 503 says "not taken"; yet a commit slower than the intake timeout still lands
        # after it (and its copies count as duplicates): find those by correlation id.
        stored_after_503 = await ledger.events_stored_by(
            each.correlation_id for _answer, refusals in answers for each in refusals
        )
        rows = await ledger.event_rows()
        inbound_rows, inbound_mids = await ledger.inbound_messages()
    finally:
        ledger.close()

    accepted = [answer for answer, _refused in answers if answer.status == 200]
    refused = [each for _answer, refusals in answers for each in refusals]
    new_events = sum(answer.events for answer in accepted)
    duplicates = sum(answer.duplicates for answer in accepted)
    doubles = duplicate_sends(fake.sends_per_recipient())
    report(
        FaultReport(
            fault=f"every delivery posted {COPIES}× at once ({len(endpoints)} intake processes)",
            database=database,
            load=f"{len(bodies)} deliveries × {COPIES}, {len(dms)} events",
            injected=f"{len(bodies) * (COPIES - 1)} redeliveries",
            acknowledged=outcome.acknowledged,
            processed=outcome.processed,
            lost=len(outcome.lost),
            duplicate_sends=str(doubles),
            seconds=time.monotonic() - started,
            notes=f"event rows {len(rows)}; answers sum events {new_events} + duplicates "
            f"{duplicates}; {len(refused)} answers were 503 (posted again), "
            f"{stored_after_503} events stored by commits that outlived their 503",
        )
    )
    assert len(accepted) == len(bodies) * COPIES, "every copy was taken in the end"
    assert len(rows) == len(dms), "one set of events"
    assert new_events + stored_after_503 == len(dms), "each event counted new exactly once"
    assert new_events + duplicates == len(dms) * COPIES
    assert drained, f"the queue did not drain\n{logs}"
    assert outcome.lost == []
    assert inbound_rows == inbound_mids == len(dms)
    assert doubles == 0


@pytest.mark.postgres
async def test_two_intake_processes_taking_the_same_deliveries_at_once_refuse_none(
    postgres_url: str, encryption_key: str, keyring: Keyring, tmp_path: Path
) -> None:
    await link_doctors(postgres_url, keyring, PAGES)
    instance = make_instance(postgres_url, encryption_key, tmp_path)
    statuses: Counter[int | None] = Counter()
    async with http_client() as http, processes(tmp_path / "logs") as group:
        ports = [free_port(), free_port()]
        for port in ports:
            await group.start_server(instance, "api", port)
        first, second = (f"http://127.0.0.1:{port}/webhooks/instagram" for port in ports)
        for round_ in range(ROUNDS):
            dms = conversations(
                PAGES, 1000, 1, tag=f"deadlock_{round_}", first_sender=round_ * 1000
            )
            bodies = [delivery_body(dms[at : at + 100]) for at in range(0, len(dms), 100)]
            # The same deliveries, at the same moment, in opposite orders.
            answers = await asyncio.gather(
                *(post_delivery(http, first, body) for body in bodies),
                *(post_delivery(http, second, body) for body in reversed(bodies)),
            )
            statuses.update(answer.status for answer in answers)
    assert set(statuses) == {200}, f"answers: {dict(statuses)}"
