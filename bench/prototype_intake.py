"""A prototype of the intake change recommended in docs/benchmarks.md — not the product.

`BatchedIntakeWriter` keeps IntakeWriter's contract (group commit, each caller answered after
its commit, a failing group retried one delivery at a time, 503 when the database is
unavailable) but writes a whole group with one executemany statement per table instead of four
statements per delivery: all deliveries, then all events (insert-or-skip), then the counts of
deliveries that had duplicates, then all audit rows.

`python -m bench.prototype_intake --port P` serves Frontdesk's own app (the same settings from
the environment, the same uvicorn options as `frontdesk api`) with this writer swapped in, so
the benchmark can measure it side by side: `python -m bench.profile --server prototype`.
It reaches into the intake's internals and may break when they change; it exists to measure
what the recommendation would buy, and is not run by `make bench`.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
from typing import Any

import uvicorn
from sqlalchemy import bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.app import create_app
from frontdesk.audit import check_metadata
from frontdesk.config import Settings
from frontdesk.db.engine import DatabaseUnavailableError, transaction
from frontdesk.db.statements import insert_or_skip
from frontdesk.db.tables import audit_logs, webhook_deliveries, webhook_events
from frontdesk.logs import configure_logging
from frontdesk.runtime import Runtime
from frontdesk.webhooks import intake as intake_module
from frontdesk.webhooks.intake import IntakeResult, IntakeWriter, delivery_associated_data
from frontdesk.webhooks.split import PROVIDER


class BatchedIntakeWriter(IntakeWriter):
    async def _commit_group(self, group: list[Any]) -> None:
        try:
            async with transaction(self._engine) as connection:
                results = await self._write_batched(connection, group)
        except DatabaseUnavailableError as exc:
            for pending in group:
                self._fail(pending, exc)
            return
        except Exception:
            if len(group) == 1:
                await super()._commit_group(group)
                return
            for pending in group:  # the product's path finds the one that cannot be stored
                await super()._commit_group([pending])
            return
        for pending, result in zip(group, results, strict=True):
            if not pending.done.done():
                pending.done.set_result(result)
        if self._on_commit is not None:
            self._on_commit()

    async def _write_batched(
        self, connection: AsyncConnection, group: list[Any]
    ) -> list[IntakeResult]:
        hashes = [hashlib.sha256(pending.body).hexdigest() for pending in group]
        uniques = [intake_module._unique_by_key(pending.split.events) for pending in group]
        delivery_rows = [
            {
                "provider": PROVIDER,
                "received_at": pending.received_at,
                "correlation_id": pending.correlation_id,
                "body_sha256": body_sha256,
                "body_size": len(pending.body),
                "body_encrypted": self._keyring.encrypt(
                    pending.body, delivery_associated_data(body_sha256)
                ),
                "status": "accepted" if pending.split.recognized else "unrecognized",
                "event_count": len(events),
                "duplicate_count": 0,
            }
            for pending, body_sha256, events in zip(group, hashes, uniques, strict=True)
        ]
        inserted = await connection.execute(
            insert(webhook_deliveries).returning(
                webhook_deliveries.c.id, sort_by_parameter_order=True
            ),
            delivery_rows,
        )
        ids = [int(value) for value in inserted.scalars().all()]
        event_rows: list[dict[str, object]] = []
        for pending, delivery_id, events in zip(group, ids, uniques, strict=True):
            event_rows.extend(self._event_rows(events, pending, delivery_id))
        stored: Counter[int] = Counter()
        if event_rows:
            statement = insert_or_skip(connection, webhook_events, ["provider", "event_key"])
            result = await connection.execute(
                statement.returning(webhook_events.c.delivery_id), event_rows
            )
            stored.update(int(value) for value in result.scalars().all())
        totals = [len(pending.split.events) for pending in group]
        updates = [
            {
                "delivery_id": delivery_id,
                "events": stored[delivery_id],
                "dups": total - stored[delivery_id],
            }
            for delivery_id, total in zip(ids, totals, strict=True)
            if stored[delivery_id] != total
        ]
        if updates:
            await connection.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == bindparam("delivery_id"))
                .values(event_count=bindparam("events"), duplicate_count=bindparam("dups")),
                updates,
            )
        audit_rows = []
        results = []
        for pending, delivery_id, body_sha256, total in zip(
            group, ids, hashes, totals, strict=True
        ):
            kept = stored[delivery_id]
            metadata = {
                "provider": PROVIDER,
                "delivery_id": delivery_id,
                "body_sha256": body_sha256,
                "body_bytes": len(pending.body),
                "events": kept,
                "duplicates": total - kept,
            }
            check_metadata(metadata)
            audit_rows.append(
                {
                    "created_at": pending.received_at,
                    "correlation_id": pending.correlation_id,
                    "resource_type": "webhook",
                    "resource_id": str(delivery_id),
                    "action": "webhook_received",
                    "status": "success" if pending.split.recognized else "unrecognized",
                    "error_message": None,
                    "metadata": metadata,
                    "doctor_id": None,
                }
            )
            results.append(
                IntakeResult(delivery_id=delivery_id, events=kept, duplicates=total - kept)
            )
        await connection.execute(insert(audit_logs), audit_rows)
        return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prototype_intake", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    runtime = Runtime.build(settings)
    runtime.intake = BatchedIntakeWriter(
        runtime.engine,
        runtime.keyring,
        runtime.clock,
        timeout=settings.intake_db_timeout_seconds,
        on_commit=runtime.worker.wake,
    )
    config = uvicorn.Config(
        create_app(runtime, run_worker=False),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
