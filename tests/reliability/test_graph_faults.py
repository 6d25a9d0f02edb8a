"""The Graph API failing at random while replies go out: 500s, 429s with Retry-After, and
requests that hang past the client's timeout (which Meta may still have delivered)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from frontdesk.crypto import Keyring
from tests.reliability.harness import (
    FaultMix,
    FaultReport,
    FaultyGraphApi,
    Ledger,
    batched,
    conversations,
    deliver_until_accepted,
    delivery_body,
    duplicate_sends,
    free_port,
    http_client,
    link_doctors,
    make_instance,
    outcome_of,
    processes,
    report,
    rng_for,
    scenario_databases,
    sized,
)

PAGES = ("17841400000000301", "17841400000000302")
GRAPH_TIMEOUT = 1.0
RETRIES = 10  # FRONTDESK_RETRY_DELAYS: ten retries, one second apart (and at least Retry-After)
TOLERANCE = 0.05  # seconds: the fake's clock and the worker's read at different moments
MIX = FaultMix(
    error_500=0.20,
    rate_limited=0.10,
    hang=0.05,
    retry_after_seconds=sized(3, 7),
    hang_seconds=GRAPH_TIMEOUT + 1.0,
    max_faults_each=RETRIES,
)


@pytest.mark.parametrize("database", scenario_databases())
async def test_every_reply_is_delivered_despite_graph_faults_and_none_twice_but_after_a_timeout(
    database: str,
    scenario_url: str,
    encryption_key: str,
    keyring: Keyring,
    tmp_path: Path,
) -> None:
    dms = conversations(PAGES, sized(60, 500), 1, tag=f"graph_{database}")
    await link_doctors(scenario_url, keyring, PAGES)
    fake = FaultyGraphApi(MIX, rng_for(f"graph-{database}"))
    ledger = Ledger(scenario_url)
    started = time.monotonic()
    try:
        async with fake.serve() as graph_url, http_client() as http:
            instance = make_instance(
                scenario_url,
                encryption_key,
                tmp_path,
                graph_timeout_seconds=str(GRAPH_TIMEOUT),
                retry_delays=",".join(["1"] * RETRIES),
                graph_url=graph_url,
            )
            async with processes(tmp_path / "logs") as group:
                port = free_port()
                await group.start_server(instance, "serve", port)
                if database == "postgresql":
                    group.start_worker(instance)
                endpoint = f"http://127.0.0.1:{port}/webhooks/instagram"
                deadline = time.monotonic() + 60
                answers = await asyncio.gather(
                    *(
                        deliver_until_accepted(
                            http, endpoint, delivery_body(batch), deadline=deadline
                        )
                        for batch in batched(dms, 10)
                    )
                )
                assert all(answer.status == 200 for answer, _refused in answers)
                drained = await ledger.wait_until_drained(sized(90, 400))
                logs = group.logs()
        outcome = await outcome_of(ledger, (dm.event_key for dm in dms))
        statuses = await ledger.statuses()
    finally:
        ledger.close()

    sends = fake.sends_per_recipient()
    unknowable = fake.unknowable_deliveries()
    doubles = duplicate_sends(sends)
    unexplained = {
        recipient: count for recipient, count in sends.items() if count - 1 > unknowable[recipient]
    }
    margins = fake.retry_after_margins()
    early = [margin for margin in margins if margin < -TOLERANCE]
    attempts = len(fake.log)
    injected = dict(fake.injected)
    report(
        FaultReport(
            fault="Graph API 20% 500, 10% 429 + Retry-After, 5% hang past timeout",
            database=database,
            load=f"{len(dms)} replies, {attempts} send attempts",
            injected=", ".join(f"{count} × {name}" for name, count in sorted(injected.items())),
            acknowledged=outcome.acknowledged,
            processed=outcome.processed,
            lost=len(outcome.lost),
            duplicate_sends=f"{doubles} (all after a timeout: {not unexplained})",
            seconds=time.monotonic() - started,
            notes=f"after a 429 the next try came {min(margins, default=0):+.2f} s or more "
            f"after its Retry-After ({MIX.retry_after_seconds} s); "
            f"client timeout {GRAPH_TIMEOUT} s, hang {MIX.hang_seconds} s; "
            f"final statuses {dict(statuses)}",
        )
    )
    assert drained, f"the queue did not drain\n{logs}"
    assert outcome.lost == [], f"acknowledged but not processed: {outcome.other_statuses}"
    assert set(sends) == {dm.sender for dm in dms}, "every reply was delivered in the end"
    assert unexplained == {}, "a reply went twice without a timeout to excuse it"
    assert early == [], "a retry came before the Retry-After Meta asked for"
    assert all(fake.injected[name] for name in ("500", "429", "hang")), "each fault happened"
