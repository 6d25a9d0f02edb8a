"""page_id → doctor_id: the origin task's resolution, with no default doctor and no guessing."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, case, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from frontdesk.audit import hash_identifier
from frontdesk.db.tables import doctor_instagram
from frontdesk.db.tenancy import scope_to_system
from frontdesk.logs import get_logger

log = get_logger(__name__)

_PAGE: BindParameter[str] = bindparam("page_id")
# Built once: it runs for every event.
_DOCTOR_FOR_PAGE = (
    select(doctor_instagram.c.doctor_id)
    .where(
        or_(
            doctor_instagram.c.instagram_page_id == _PAGE,
            doctor_instagram.c.facebook_page_id == _PAGE,
        ),
        doctor_instagram.c.status != "disconnected",
    )
    .order_by(case((doctor_instagram.c.instagram_page_id == _PAGE, 0), else_=1))
    .limit(1)
)


async def resolve_doctor_for_page(
    connection: AsyncConnection, page_id: str, correlation_id: str | None = None
) -> str | None:
    """The doctor whose connected account has this Instagram account id or Facebook Page id.

    One indexed query; an Instagram account id match wins over a Facebook Page id match.
    Disconnected accounts route nowhere. Routing looks across doctors by nature, so the
    transaction takes the system scope (connections only; patient data stays scoped).
    """
    if not page_id:
        return None
    await scope_to_system(connection)
    row = (await connection.execute(_DOCTOR_FOR_PAGE, {"page_id": page_id})).first()
    if row is None:
        log.debug(
            "page_not_linked", correlation_id=correlation_id, page_id_hash=hash_identifier(page_id)
        )
        return None
    return str(row.doctor_id)


async def resolve_doctor_for_candidates(
    connection: AsyncConnection, candidates: Iterable[str | None], correlation_id: str | None = None
) -> tuple[str, str] | None:
    """The first candidate page id that routes, with its doctor: (doctor_id, page_id)."""
    tried: set[str] = set()
    for page_id in candidates:
        if not page_id or page_id in tried:
            continue
        tried.add(page_id)
        doctor_id = await resolve_doctor_for_page(connection, page_id, correlation_id)
        if doctor_id is not None:
            return doctor_id, page_id
    return None
