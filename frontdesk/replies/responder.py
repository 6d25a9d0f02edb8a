"""Decide whether and what to answer automatically, from the doctor's rules (pure, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

MESSAGING_WINDOW = timedelta(hours=24)
TEXT_LIMIT = 1000


@dataclass(frozen=True)
class ReplyRules:
    enabled: bool
    greeting_text: str
    cooldown: timedelta
    emergency_words: tuple[str, ...]
    emergency_text: str


DEFAULT_RULES = ReplyRules(
    enabled=True,
    greeting_text=(
        "Thank you for writing to the clinic. We have your message and will answer here as soon "
        "as we can."
    ),
    cooldown=timedelta(hours=12),
    emergency_words=(
        "emergency",
        "urgent",
        "chest pain",
        "can't breathe",
        "cannot breathe",
        "bleeding",
        "overdose",
        "suicide",
        "emergencia",
        "urgente",
    ),
    emergency_text=(
        "If this is a medical emergency, call your local emergency number now or go to the "
        "nearest emergency department. This inbox is not monitored around the clock."
    ),
)


@dataclass(frozen=True)
class ReplyDecision:
    text: str | None
    reason: str


def decide_reply(
    rules: ReplyRules,
    *,
    text: str | None,
    is_new_conversation: bool,
    last_auto_reply_at: datetime | None,
    message_time: datetime,
    now: datetime,
) -> ReplyDecision:
    if not rules.enabled:
        return ReplyDecision(None, "replies_disabled")
    if now - message_time >= MESSAGING_WINDOW:
        return ReplyDecision(None, "outside_messaging_window")
    if text and rules.emergency_text and mentions_emergency(text, rules.emergency_words):
        return ReplyDecision(rules.emergency_text, "emergency")
    if not rules.greeting_text:
        return ReplyDecision(None, "no_greeting_configured")
    if is_new_conversation or last_auto_reply_at is None:
        return ReplyDecision(rules.greeting_text, "greeting")
    if now - last_auto_reply_at >= rules.cooldown:
        return ReplyDecision(rules.greeting_text, "greeting_after_cooldown")
    return ReplyDecision(None, "cooldown")


def mentions_emergency(text: str, words: tuple[str, ...]) -> bool:
    folded = text.casefold()
    return any(
        re.search(rf"(?<!\w){re.escape(word.casefold())}(?!\w)", folded) for word in words if word
    )


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut a reply into parts Meta accepts, at whitespace where there is some."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts
