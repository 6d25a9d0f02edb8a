"""The doctor's reply rules as stored; a doctor with no row gets the defaults."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.db.tables import reply_rules
from frontdesk.replies.responder import DEFAULT_RULES, ReplyRules

_RULES_OF_DOCTOR = select(reply_rules).where(reply_rules.c.doctor_id == bindparam("match_doctor"))


async def load_reply_rules(connection: AsyncConnection, doctor_id: str) -> ReplyRules:
    row = (await connection.execute(_RULES_OF_DOCTOR, {"match_doctor": doctor_id})).first()
    if row is None:
        return DEFAULT_RULES
    return replace(
        DEFAULT_RULES,
        enabled=row.enabled,
        greeting_text=row.greeting_text,
        cooldown=timedelta(seconds=row.cooldown_seconds),
        emergency_words=tuple(row.emergency_words),
        emergency_text=row.emergency_text,
    )


async def save_reply_rules(
    connection: AsyncConnection, doctor_id: str, rules: ReplyRules, now: datetime
) -> None:
    values = {
        "enabled": rules.enabled,
        "greeting_text": rules.greeting_text,
        "cooldown_seconds": int(rules.cooldown.total_seconds()),
        "emergency_words": list(rules.emergency_words),
        "emergency_text": rules.emergency_text,
        "updated_at": now,
    }
    updated = await connection.execute(
        reply_rules.update().where(reply_rules.c.doctor_id == doctor_id).values(**values)
    )
    if not updated.rowcount:
        await connection.execute(reply_rules.insert().values(doctor_id=doctor_id, **values))
