"""A Frontdesk instance as a user runs it: settings in the environment, the `frontdesk` command.

`Instance` holds one database and its secrets; it migrates, seeds doctors and starts
`frontdesk serve`, `frontdesk api` and `frontdesk worker` processes. It never imports the app
into the harness process: what is measured is the installed command.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy import create_engine as create_sync_engine

from bench.procs import (
    LOOPBACK,
    Process,
    ProcessGroup,
    free_port,
    frontdesk_command,
    wait_until_ready,
)
from bench.workload import page_id
from frontdesk.clinic.connections import token_associated_data
from frontdesk.crypto import Keyring, generate_key_spec
from frontdesk.db.engine import sync_url
from frontdesk.db.migrate import upgrade_to_head
from frontdesk.db.tables import doctor_instagram, doctors, webhook_events

SEED_CHUNK = 5_000
FINAL_STATUSES = ("processed", "ignored", "failed", "dead")


@dataclass
class Instance:
    database_url: str
    home: Path
    graph_url: str = "http://127.0.0.1:9"  # discard port: nothing listens, sends fail fast
    app_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    key_spec: str = field(default_factory=generate_key_spec)
    verify_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, *, app_secret: str | None = None) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        return {
            "FRONTDESK_DATABASE_URL": self.database_url,
            "FRONTDESK_APP_SECRETS": app_secret or self.app_secret,
            "FRONTDESK_ENCRYPTION_KEYS": self.key_spec,
            "FRONTDESK_VERIFY_TOKEN": self.verify_token,
            "FRONTDESK_GRAPH_API_URL": self.graph_url,
            "FRONTDESK_FACEBOOK_GRAPH_API_URL": self.graph_url,
            "FRONTDESK_VAR_DIR": str(self.home / "var"),
            **self.extra_env,
        }

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgres")

    def migrate(self) -> None:
        """Setup, not measured: run the migrations in this process (as `frontdesk migrate`
        would; `serve` migrates again on start, a no-op)."""
        upgrade_to_head(self.database_url)

    def start_server(
        self,
        group: ProcessGroup,
        *,
        mode: str = "serve",
        name: str = "frontdesk",
        app_secret: str | None = None,
        timeout: float = 60.0,
    ) -> tuple[Process, str]:
        """`frontdesk serve` (API + embedded worker) or `frontdesk api`; returns the base URL."""
        if mode not in ("serve", "api"):
            raise ValueError(mode)
        port = free_port()
        process = group.start(
            name,
            [*frontdesk_command(), mode, "--host", LOOPBACK, "--port", str(port)],
            env=self.env(app_secret=app_secret),
            cwd=self.home,
        )
        base = f"http://{LOOPBACK}:{port}"
        wait_until_ready(process, f"{base}/readyz", timeout=timeout)
        return process, base

    def start_worker(self, group: ProcessGroup, *, name: str, concurrency: int = 4) -> Process:
        return group.start(
            name,
            [*frontdesk_command(), "worker", "--concurrency", str(concurrency)],
            env=self.env(),
            cwd=self.home,
        )

    # --- direct database access (the harness's own bookkeeping, as the table owner) --------

    def _engine(self) -> Engine:
        return create_sync_engine(sync_url(self.database_url))

    def seed_doctors(self, count: int, *, start: int = 0) -> float:
        """Insert `count` doctors, each with an active Instagram connection and an encrypted
        token, in bulk (SQLAlchemy Core); returns the seconds it took."""
        began = time.monotonic()
        keyring = Keyring.from_specs([self.key_spec])
        now = datetime.now(UTC)
        engine = self._engine()
        try:
            for chunk_start in range(start, start + count, SEED_CHUNK):
                chunk = range(chunk_start, min(chunk_start + SEED_CHUNK, start + count))
                doctor_rows = []
                link_rows = []
                for index in chunk:
                    doctor_id = str(uuid.uuid4())
                    connection_id = str(uuid.uuid4())
                    doctor_rows.append(
                        {
                            "id": doctor_id,
                            "name": f"Dr. Bench {index}",
                            "email": f"doctor{index}@bench.example",
                            "created_at": now,
                        }
                    )
                    link_rows.append(
                        {
                            "id": connection_id,
                            "doctor_id": doctor_id,
                            "instagram_page_id": page_id(index),
                            "facebook_page_id": None,
                            "username": f"clinic{index}",
                            "login_kind": "instagram",
                            "access_token_encrypted": keyring.encrypt_text(
                                f"IGbench-{index}-{secrets.token_hex(8)}",
                                token_associated_data(connection_id),
                            ),
                            "token_expires_at": None,
                            "status": "active",
                            "connected_at": now,
                            "updated_at": now,
                            "last_webhook_at": None,
                            "last_send_at": None,
                            "token_issued_at": now,
                            "disconnected_at": None,
                        }
                    )
                with engine.begin() as connection:
                    connection.execute(doctors.insert(), doctor_rows)
                    connection.execute(doctor_instagram.insert(), link_rows)
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        finally:
            engine.dispose()
        return time.monotonic() - began

    def event_counts(self) -> dict[str, int]:
        engine = self._engine()
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(webhook_events.c.status, func.count()).group_by(webhook_events.c.status)
                ).all()
        finally:
            engine.dispose()
        return {str(status): int(count) for status, count in rows}

    def finish_span(self) -> tuple[int, float | None]:
        """(finished events, seconds between the first and the last finish)."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                row = connection.execute(
                    select(
                        func.count(),
                        func.min(webhook_events.c.finished_at),
                        func.max(webhook_events.c.finished_at),
                    ).where(webhook_events.c.status.in_(FINAL_STATUSES))
                ).one()
        finally:
            engine.dispose()
        count, first, last = row
        if not count or first is None or last is None:
            return int(count or 0), None
        return int(count), (_as_datetime(last) - _as_datetime(first)).total_seconds()

    def reasons(self) -> dict[str, int]:
        engine = self._engine()
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(webhook_events.c.status, webhook_events.c.reason, func.count()).group_by(
                        webhook_events.c.status, webhook_events.c.reason
                    )
                ).all()
        finally:
            engine.dispose()
        return {f"{status}:{reason}": int(count) for status, reason, count in rows}


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
