"""The `frontdesk` command, as an operator types it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from frontdesk.app import create_app
from frontdesk.cli import app
from frontdesk.config import Settings
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import APP_SECRET, post_delivery

PAGE = "17841455512340001"


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "FRONTDESK_DATABASE_URL": settings.database_url,
        "FRONTDESK_VAR_DIR": str(settings.var_dir),
        "FRONTDESK_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
        "FRONTDESK_APP_SECRETS": ",".join(settings.app_secrets),
    }


@pytest.fixture
def run(cli_env: dict[str, str]) -> object:
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> object:
        return runner.invoke(app, list(args), env=cli_env, input=stdin)

    return invoke


def add_doctor(run: object, email: str = "rivera@clinic.test") -> str:
    result = run("doctor", "add", "--name", "Dr. Rivera", "--email", email, "--json")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    return str(json.loads(result.output)["id"])


def test_doctor_add_prints_the_new_id_and_list_shows_it(run: object) -> None:
    doctor_id = add_doctor(run)

    listed = run("doctor", "list", "--json")  # type: ignore[operator]

    assert [doctor["id"] for doctor in json.loads(listed.output)] == [doctor_id]


def test_doctor_add_with_a_taken_email_fails_clearly(run: object) -> None:
    add_doctor(run)

    result = run("doctor", "add", "--name", "Dr. Other", "--email", "rivera@clinic.test")  # type: ignore[operator]

    assert result.exit_code == 1
    assert "already exists" in result.output


def test_instagram_link_reads_the_token_from_stdin_and_refuses_a_page_of_another_doctor(
    run: object,
) -> None:
    first = add_doctor(run, "first@clinic.test")
    second = add_doctor(run, "second@clinic.test")
    link = ("instagram", "link", "--instagram-page-id", PAGE, "--access-token-file", "-")

    linked = run(*link, "--doctor", first, stdin="token-one\n")  # type: ignore[operator]
    refused = run(*link, "--doctor", second, stdin="token-two\n")  # type: ignore[operator]

    assert linked.exit_code == 0, linked.output
    assert refused.exit_code == 1
    assert "another doctor" in refused.output
    assert "token" not in refused.output.replace("--access-token-file", "")


def test_instagram_link_to_an_unknown_doctor_and_unlink_without_link_fail_clearly(
    run: object,
) -> None:
    link = run(  # type: ignore[operator]
        "instagram",
        "link",
        "--doctor",
        "nope",
        "--instagram-page-id",
        PAGE,
        "--access-token-file",
        "-",
        stdin="t\n",
    )
    unlink = run("instagram", "unlink", "--doctor", "nope")  # type: ignore[operator]

    assert (link.exit_code, unlink.exit_code) == (1, 1)
    assert "no doctor" in link.output
    assert "no Instagram connection" in unlink.output


def test_an_invalid_setting_is_named_without_its_value(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "FRONTDESK_LEASE_SECONDS": "not-a-number-sk_live_canary",
        "FRONTDESK_WORKER_POLL_SECONDS": "0",
    }

    result = CliRunner().invoke(app, ["worker"], env=env)

    assert result.exit_code == 1
    assert "FRONTDESK_LEASE_SECONDS" in result.output
    assert "FRONTDESK_WORKER_POLL_SECONDS" in result.output
    assert "sk_live_canary" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["worker", "serve", "migrate"])
def test_a_lease_no_longer_than_a_send_may_take_is_refused_before_anything_runs(
    cli_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    untouched = tmp_path / "untouched" / "frontdesk.db"
    env = {
        **cli_env,
        "FRONTDESK_DATABASE_URL": f"sqlite:///{untouched}",
        "FRONTDESK_LEASE_SECONDS": "15",
        "FRONTDESK_GRAPH_TIMEOUT_SECONDS": "10",
    }

    result = CliRunner().invoke(app, [command], env=env)

    assert result.exit_code == 1
    assert "FRONTDESK_LEASE_SECONDS must be longer than" in " ".join(result.output.split())
    assert not untouched.exists(), "nothing was migrated"


def test_a_bad_item_of_a_list_setting_is_named_by_its_position(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "FRONTDESK_RETRY_DELAYS": "60,soon"}

    result = CliRunner().invoke(app, ["worker"], env=env)

    assert result.exit_code == 1
    assert "FRONTDESK_RETRY_DELAYS (item 2)" in " ".join(result.output.split())
    assert "soon" not in result.output


def seed_unknown_page_event(settings: Settings) -> None:
    async def seed() -> None:
        runtime = Runtime.build(
            settings, graph_transport=httpx2.ASGITransport(app=FakeGraphApi().app)
        )
        asgi = create_app(runtime, run_worker=False, manage_runtime=False)
        try:
            async with httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=asgi), base_url="http://t"
            ) as client:
                delivery = payloads.dm_delivery(page_id="404", sender="1", text="x")
                assert (await post_delivery(client, delivery)).status_code == 200
            await runtime.worker.run_until_idle()
        finally:
            await runtime.stop()

    asyncio.run(seed())


def test_events_list_show_and_replay(run: object, settings: Settings) -> None:
    seed_unknown_page_event(settings)

    listed = json.loads(run("events", "list", "--json").output)  # type: ignore[operator]
    [event] = listed
    shown = json.loads(run("events", "show", str(event["id"]), "--json").output)  # type: ignore[operator]
    replayed = run("events", "replay", str(event["id"]))  # type: ignore[operator]
    again = run("events", "replay", str(event["id"]))  # type: ignore[operator]
    missing = run("events", "show", "999999")  # type: ignore[operator]

    assert (event["status"], event["reason"], event["kind"]) == (
        "failed",
        "unknown_page",
        "message",
    )
    assert [attempt["outcome"] for attempt in shown["attempt_log"]] == ["failed"]
    assert replayed.exit_code == 0
    assert again.exit_code == 1, "an event already queued is not replayed twice"
    assert missing.exit_code == 1


def test_dlq_list_and_replay_all(run: object, settings: Settings) -> None:
    empty = run("dlq", "list", "--json")  # type: ignore[operator]
    neither = run("dlq", "replay")  # type: ignore[operator]
    everything = run("dlq", "replay", "--all")  # type: ignore[operator]

    assert json.loads(empty.output) == []
    assert neither.exit_code == 1
    assert "0 dead events" in everything.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_with_no_settings_generates_secrets_and_simulate_dm_is_accepted(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRONTDESK_")}
    env["FRONTDESK_GRAPH_API_URL"] = "http://127.0.0.1:1"
    command = [sys.executable, "-m", "frontdesk", "serve", "--port", str(port)]
    server = subprocess.Popen(  # noqa: S603 - our own command
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until_ready(port)
        secrets_file = tmp_path / "var" / "secrets.env"
        simulate = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "frontdesk",
                "simulate",
                "dm",
                "--page-id",
                PAGE,
                "--sender",
                "7321554890123456",
                "--text",
                "hello there",
                "--url",
                f"http://127.0.0.1:{port}/webhooks/instagram",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()

    assert simulate.returncode == 0, simulate.stdout + simulate.stderr
    assert '"events": 1' in simulate.stdout
    assert (tmp_path / "var" / "frontdesk.db").exists()
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert str(secrets_file) in output
    for line in secrets_file.read_text().splitlines():
        assert line.split("=", 1)[1] not in output
    assert APP_SECRET not in output
    assert "Application shutdown complete" in output, "SIGTERM shut the server down gracefully"


def wait_until_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("frontdesk serve did not become ready in 30 s")
