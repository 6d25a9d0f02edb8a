"""POST and GET /webhooks/instagram through HTTP: every answer for good and bad input."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx2
import pytest
from sqlalchemy import func, select

from frontdesk.app import create_app
from frontdesk.config import Settings
from frontdesk.db.tables import audit_logs, webhook_deliveries, webhook_events
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.signing import signature_for, signed_headers
from tests.conftest import APP_SECRET, VERIFY_TOKEN, post_delivery, recent_ms, unscoped

WEBHOOK = "/webhooks/instagram"


async def stored(runtime: Runtime, table: object) -> int:
    async with unscoped(runtime) as connection:
        statement = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int((await connection.execute(statement)).scalar_one())


def one_dm() -> dict[str, object]:
    return payloads.dm_delivery(
        page_id="17841455512340001", sender="7321554890123456", text="hi", timestamp=recent_ms()
    )


async def test_signed_delivery_is_stored_before_the_200(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    response = await post_delivery(client, one_dm())

    assert response.status_code == 200
    assert response.json() == {"events": 1, "duplicates": 0}
    assert response.headers["x-correlation-id"]
    assert await stored(runtime, webhook_deliveries) == 1
    assert await stored(runtime, webhook_events) == 1
    async with unscoped(runtime) as connection:
        audit = (await connection.execute(select(audit_logs))).one()
        delivery = (await connection.execute(select(webhook_deliveries))).one()
    assert (audit.action, audit.status) == ("webhook_received", "success")
    assert audit.metadata["events"] == 1
    assert delivery.correlation_id == response.headers["x-correlation-id"]
    # Two bytes ("hi") occur in random ciphertext about once in two hundred rows; this does not.
    assert b'"text":"hi"' not in delivery.body_encrypted


async def test_a_signature_from_any_configured_secret_is_accepted(
    client: httpx2.AsyncClient,
) -> None:
    response = await post_delivery(client, one_dm(), secret="an-old-secret")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "sha256=",
        "sha256=" + "0" * 64,
        "md5=" + "0" * 64,
        "sha256=zz" + "0" * 62,
    ],
    ids=["missing", "empty", "sha1-only", "no-digest", "wrong-digest", "wrong-prefix", "not-hex"],
)
async def test_missing_malformed_or_wrong_signature_is_401_and_nothing_is_stored(
    runtime: Runtime, client: httpx2.AsyncClient, header: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header

    response = await client.post(WEBHOOK, content=payloads.encode(one_dm()), headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await stored(runtime, webhook_deliveries) == 0


async def test_signature_of_a_secret_not_configured_is_401(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    response = await post_delivery(client, one_dm(), secret="somebody-elses-secret")

    assert response.status_code == 401
    assert await stored(runtime, webhook_events) == 0


async def test_one_changed_byte_after_signing_is_401(client: httpx2.AsyncClient) -> None:
    body = payloads.encode(one_dm())
    headers = signed_headers(body, APP_SECRET)

    response = await client.post(WEBHOOK, content=body.replace(b"hi", b"ho"), headers=headers)

    assert response.status_code == 401


async def test_escaped_unicode_body_is_verified_over_its_raw_bytes(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    delivery = payloads.dm_delivery(
        page_id="17841455512340001", sender="7321554890123456", text="äöå http://x/y"
    )
    body = payloads.encode(delivery)
    assert b"\\u00e4" in body
    assert b"\\/" in body

    response = await post_delivery(client, delivery)

    assert response.status_code == 200
    assert await stored(runtime, webhook_events) == 1


async def test_signed_body_that_is_not_json_is_400(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    for body in (b"not json", b"\xff\xfe", b"[" * 50_000):
        response = await client.post(
            WEBHOOK, content=body, headers=signed_headers(body, APP_SECRET)
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"
    assert await stored(runtime, webhook_deliveries) == 0


@pytest.mark.parametrize(
    "document",
    [[], "text", 42, {"object": "instagram"}, {"object": "instagram", "entry": {}}, {"entry": []}],
    ids=["list", "string", "number", "no-entry", "entry-not-list", "no-object"],
)
async def test_signed_json_of_an_unknown_shape_is_kept_as_unrecognized_and_answered_200(
    runtime: Runtime, client: httpx2.AsyncClient, document: object
) -> None:
    response = await post_delivery(client, document)

    assert response.status_code == 200
    assert response.json() == {"events": 0, "duplicates": 0}
    async with unscoped(runtime) as connection:
        delivery = (await connection.execute(select(webhook_deliveries))).one()
    assert delivery.status == "unrecognized"
    assert delivery.body_encrypted is not None


async def test_malformed_items_inside_a_valid_envelope_are_kept_as_events(
    runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    document = {"object": "instagram", "entry": [7, {"id": "1", "messaging": ["x", None]}]}

    response = await post_delivery(client, document)

    assert response.json() == {"events": 3, "duplicates": 0}


async def test_body_over_the_limit_is_413(
    settings: Settings, runtime: Runtime, client: httpx2.AsyncClient
) -> None:
    body = b'{"object":"instagram","entry":[]}'.ljust(settings.max_body_bytes + 1, b" ")

    response = await client.post(WEBHOOK, content=body, headers=signed_headers(body, APP_SECRET))

    assert response.status_code == 413
    assert await stored(runtime, webhook_deliveries) == 0


async def test_body_over_the_limit_without_content_length_is_413(
    settings: Settings, client: httpx2.AsyncClient
) -> None:
    chunk = b" " * 65536
    chunks = settings.max_body_bytes // len(chunk) + 2

    async def stream():  # type: ignore[no-untyped-def]
        for _ in range(chunks):
            yield chunk

    response = await client.post(WEBHOOK, content=stream(), headers={"X-Hub-Signature-256": "x"})

    assert response.status_code == 413


async def test_verification_handshake_echoes_the_challenge_as_plain_text(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get(
        WEBHOOK,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )

    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
    ids=["wrong-token", "wrong-mode", "nothing"],
)
async def test_verification_with_wrong_token_or_mode_is_403(
    client: httpx2.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(WEBHOOK, params=params)

    assert response.status_code == 403
    assert "1" not in response.text


async def test_other_methods_are_405(client: httpx2.AsyncClient) -> None:
    response = await client.put(WEBHOOK, content=b"{}")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_locked_database_gives_503_with_retry_after_and_recovers(
    settings: Settings,
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the write lock is SQLite's; PostgreSQL outage is tested below")
    runtime = Runtime.build(settings.model_copy(update={"intake_db_timeout_seconds": 0.5}))
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN IMMEDIATE")
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
        ) as client:
            try:
                response = await post_delivery(client, one_dm())
            finally:
                blocker.rollback()
                blocker.close()
            recovered = await post_delivery(client, one_dm())
    finally:
        await runtime.stop()

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["error"]["code"] == "database_unavailable"
    assert recovered.status_code == 200


async def test_unreachable_database_gives_503_never_500(
    settings: Settings, clock: object, tmp_path: object
) -> None:
    down = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"})
    runtime = Runtime.build(down)
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
        ) as http:
            response = await post_delivery(http, one_dm())
            ready = await http.get("/readyz")
    finally:
        await runtime.stop()

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert ready.status_code == 503


async def test_signature_failures_are_counted_in_metrics(client: httpx2.AsyncClient) -> None:
    body = payloads.encode(one_dm())
    await client.post(
        WEBHOOK, content=body, headers={"X-Hub-Signature-256": signature_for(body, "x")}
    )

    metrics = await client.get("/metrics")

    assert "frontdesk_webhook_signature_failures_total 1.0" in metrics.text


async def test_a_client_that_sends_its_body_too_slowly_gets_408_and_nothing_is_stored(
    settings: Settings, clock: object, fake_graph: object
) -> None:
    impatient = settings.model_copy(update={"body_timeout_seconds": 0.2})
    runtime = Runtime.build(impatient)
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    body = payloads.encode(one_dm())

    async def trickle():  # type: ignore[no-untyped-def]
        for byte in body[:20]:
            yield bytes([byte])
            await asyncio.sleep(0.05)

    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
        ) as http:
            response = await http.post(
                WEBHOOK, content=trickle(), headers=signed_headers(body, APP_SECRET)
            )
        assert response.status_code == 408
        assert await stored(runtime, webhook_deliveries) == 0
    finally:
        await runtime.stop()
