"""Fixtures of the fault-injection scenarios, and the table of what each one found."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
import structlog

from frontdesk.crypto import Keyring, generate_key_spec
from frontdesk.db.migrate import upgrade_to_head
from frontdesk.logs import QUIET_LOGGERS, clear_context, configure_logging
from tests.conftest import POSTGRES_URL, _truncate_postgres
from tests.reliability.harness import REPORTS, render_table


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The configured PostgreSQL database, migrated and emptied; skipped when there is none."""
    if not POSTGRES_URL:
        pytest.skip("FRONTDESK_TEST_DATABASE_URL is not set")
    upgrade_to_head(POSTGRES_URL)
    _truncate_postgres(POSTGRES_URL)
    yield POSTGRES_URL
    _truncate_postgres(POSTGRES_URL)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'frontdesk.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
def encryption_key() -> str:
    return generate_key_spec()


@pytest.fixture
def keyring(encryption_key: str) -> Keyring:
    return Keyring.from_specs([encryption_key])


@pytest.fixture
def scenario_url(database: str, request: pytest.FixtureRequest) -> str:
    """The database of a test parametrized with `database` (see `scenario_databases`)."""
    return str(
        request.getfixturevalue("postgres_url" if database == "postgresql" else "sqlite_url")
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    table = render_table(REPORTS)
    terminalreporter.write_sep("=", "fault injection")
    terminalreporter.write_line(table)
    target = os.environ.get("FRONTDESK_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(table)


@pytest.fixture
def product_logging(tmp_path: Path) -> Iterator[Path]:
    """Log as `frontdesk serve` does (JSON, exception text dropped), for workers run in-process,
    into a file; put the process-wide logging state back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    access_disabled = logging.getLogger("uvicorn.access").disabled
    structlog_config = structlog.get_config()
    retry_hooks = stamina.instrumentation.get_on_retry_hooks()
    path = tmp_path / "frontdesk.log"
    with path.open("w") as stream:
        configure_logging("WARNING", json=True, stream=stream)
        yield path
    clear_context()
    root.handlers = handlers
    root.setLevel(level)
    for name, quiet_level in quiet.items():
        logging.getLogger(name).setLevel(quiet_level)
    logging.getLogger("uvicorn.access").disabled = access_disabled
    structlog.configure(**structlog_config)
    stamina.instrumentation.set_on_retry_hooks(retry_hooks)
