"""The audit log: the writer, which refuses metadata that could carry patient data or a secret,
and the listing operators read."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.db.tables import audit_logs
from frontdesk.privacy import SENSITIVE_KEYS

FORBIDDEN_METADATA_KEYS = SENSITIVE_KEYS
ALLOWED_VALUE_TYPES = (str, int, float, bool, type(None))
MAX_STRING_VALUE = 128


class AuditMetadataError(ValueError):
    """Audit metadata named a forbidden key or held a value that is not a plain scalar."""


def check_metadata(metadata: Mapping[str, Any], path: str = "") -> None:
    """Raise AuditMetadataError for forbidden keys (at any depth) or long free-form strings."""
    for key, value in metadata.items():
        where = f"{path}.{key}" if path else str(key)
        if str(key).lower() in FORBIDDEN_METADATA_KEYS:
            raise AuditMetadataError(f"audit metadata may not carry {where!r}")
        _check_value(value, where)


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        check_metadata(value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, list):
                raise AuditMetadataError(f"audit metadata {where!r} holds a non-scalar")
            _check_value(item, f"{where}[{index}]")
    elif not isinstance(value, ALLOWED_VALUE_TYPES):
        raise AuditMetadataError(f"audit metadata {where!r} holds a non-scalar")
    elif isinstance(value, str) and len(value) > MAX_STRING_VALUE:
        raise AuditMetadataError(f"audit metadata {where!r} is too long to be an id or hash")


class AuditFields(TypedDict):
    """What an audit row says; everything but `now`, the kind of resource, the action and the
    status is optional."""

    now: datetime
    resource_type: str
    action: str
    status: str
    correlation_id: NotRequired[str | None]
    resource_id: NotRequired[str | None]
    doctor_id: NotRequired[str | None]
    error_message: NotRequired[str | None]
    metadata: NotRequired[Mapping[str, Any] | None]


def audit_row(**fields: Unpack[AuditFields]) -> dict[str, Any]:
    """The values of one audit row, its metadata checked for anything that must not be kept."""
    record = dict(fields.get("metadata") or {})
    check_metadata(record)
    return {
        "created_at": fields["now"],
        "correlation_id": fields.get("correlation_id"),
        "resource_type": fields["resource_type"],
        "resource_id": fields.get("resource_id"),
        "action": fields["action"],
        "status": fields["status"],
        "error_message": fields.get("error_message"),
        "metadata": record,
        "doctor_id": fields.get("doctor_id"),
    }


async def write_audit(connection: AsyncConnection, **fields: Unpack[AuditFields]) -> None:
    """Append one audit row in the caller's transaction."""
    await connection.execute(audit_logs.insert().values(audit_row(**fields)))


async def write_audits(connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append rows made by `audit_row` in the caller's transaction, in one statement."""
    if rows:
        await connection.execute(audit_logs.insert(), [dict(row) for row in rows])


def hash_identifier(value: str) -> str:
    """A stable, non-reversible stand-in for an outside id (a page id) in audit rows and logs."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: datetime
    action: str
    status: str
    resource_type: str
    resource_id: str | None
    doctor_id: str | None
    correlation_id: str | None
    error_message: str | None
    metadata: dict[str, Any]


async def list_audit(
    connection: AsyncConnection,
    *,
    action: str | None = None,
    resource_type: str | None = None,
    doctor_id: str | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Audit rows, newest first; every filter given must match. On PostgreSQL other doctors'
    rows are visible only in the system scope (`system_transaction`)."""
    statement = select(audit_logs).order_by(audit_logs.c.id.desc()).limit(limit)
    filters = (
        (audit_logs.c.action, action),
        (audit_logs.c.resource_type, resource_type),
        (audit_logs.c.doctor_id, doctor_id),
        (audit_logs.c.status, status),
    )
    for column, value in filters:
        if value:
            statement = statement.where(column == value)
    return [
        AuditEntry(
            id=row.id,
            created_at=row.created_at,
            action=row.action,
            status=row.status,
            resource_type=row.resource_type,
            resource_id=row.resource_id,
            doctor_id=row.doctor_id,
            correlation_id=row.correlation_id,
            error_message=row.error_message,
            metadata=dict(row.metadata or {}),
        )
        for row in await connection.execute(statement)
    ]
