"""Fixtures of the fault-injection scenarios, and the table of what each one found."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontdesk.crypto import Keyring, generate_key_spec
from frontdesk.db.migrate import upgrade_to_head
from tests.conftest import POSTGRES_URL, _truncate_postgres, logging_into
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
    into a file."""
    path = tmp_path / "frontdesk.log"
    with path.open("w") as stream, logging_into(stream, "WARNING"):
        yield path
