"""One Meta delivery into its events: every messaging, standby and changes item of every entry."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

PROVIDER = "instagram"
MAX_KEY_PART = 200  # a mid; with the prefix and an entry id the key stays within 300
MAX_ID_LENGTH = 64
MAX_NESTING = 100  # Meta's payloads nest about ten deep; far deeper cannot be keyed safely
MAX_TIMESTAMP_DIGITS = 20
SECONDS_CUTOFF = 100_000_000_000  # below this a timestamp is in seconds, not milliseconds


class PayloadNotJsonError(ValueError):
    """The body is not valid UTF-8 JSON."""


@dataclass(frozen=True)
class SplitEvent:
    """One event of a delivery, ready to be queued; `payload` is what the worker will read."""

    kind: str
    event_key: str
    page_id: str | None
    ordering_key: str
    occurred_at_ms: int | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class SplitDelivery:
    recognized: bool
    events: list[SplitEvent]


def parse_json(body: bytes) -> Any:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadNotJsonError("body is not JSON") from exc
    if _nested_deeper_than(document, MAX_NESTING):
        raise PayloadNotJsonError("body is nested too deeply")
    return document


def _nested_deeper_than(document: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, dict | list) else []
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def split_delivery(document: Any) -> SplitDelivery:
    """Events of a parsed delivery; a document that is not Meta's envelope is unrecognized."""
    if not _is_envelope(document):
        return SplitDelivery(recognized=False, events=[])
    events: list[SplitEvent] = []
    for entry in document["entry"]:
        events.extend(_split_entry(entry))
    return SplitDelivery(recognized=True, events=events)


def _is_envelope(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and document.get("object") == PROVIDER
        and isinstance(document.get("entry"), list)
    )


def _split_entry(entry: Any) -> list[SplitEvent]:
    if not isinstance(entry, dict):
        return [_malformed_event(None, "entry", entry)]
    page_id = as_id(entry.get("id"))
    entry_time = _as_millis(entry.get("time"))
    events: list[SplitEvent] = []
    for source in ("messaging", "standby"):
        for item in _as_list(entry.get(source)):
            events.append(_messaging_event(page_id, entry_time, source, item))
    for change in _as_list(entry.get("changes")):
        events.append(_change_event(page_id, entry_time, change))
    return events


def _messaging_event(
    page_id: str | None, entry_time: int | None, source: str, item: Any
) -> SplitEvent:
    if not isinstance(item, dict):
        return _malformed_event(page_id, source, item)
    kind = messaging_kind(item)
    key = _messaging_key(kind, page_id, item)
    if source == "standby":
        key = f"standby:{key}"
    counterpart = _counterpart_id(kind, item)
    return SplitEvent(
        kind=f"standby_{kind}" if source == "standby" else kind,
        event_key=key,
        page_id=page_id,
        ordering_key=conversation_ordering_key(page_id, counterpart or key),
        occurred_at_ms=_as_millis(item.get("timestamp")) or entry_time,
        payload={"entry_id": page_id, "source": source, "item": item},
    )


def conversation_ordering_key(page_id: str | None, counterpart: str) -> str:
    """Events with the same key are handled one at a time: one conversation, page + patient."""
    return _digest(f"{page_id}|{counterpart}")


def messaging_kind(item: dict[str, Any]) -> str:
    """The kind of a messaging item, from the member Meta sets on it."""
    message = item.get("message")
    if isinstance(message, dict):
        if message.get("is_deleted"):
            return "deleted"
        if message.get("is_echo"):
            return "echo"
        return "message"
    for member, kind in (
        ("message_edit", "edit"),
        ("reaction", "reaction"),
        ("read", "read"),
        ("postback", "postback"),
        ("referral", "referral"),
        ("optin", "optin"),
    ):
        if isinstance(item.get(member), dict):
            return kind
    return "other"


def _messaging_key(kind: str, page_id: str | None, item: dict[str, Any]) -> str:
    sender = _nested_id(item, "sender")
    if kind in ("message", "echo"):
        mid = _nested_str(item, "message", "mid")
        if mid:
            return f"message:{page_id}:{mid}"
    elif kind == "deleted":
        mid = _nested_str(item, "message", "mid")
        if mid:
            return f"deleted:{page_id}:{mid}"
    elif kind == "edit":
        mid = _nested_str(item, "message_edit", "mid")
        if mid:
            num_edit = _as_count(item["message_edit"].get("num_edit"))
            return f"edit:{page_id}:{mid}:{num_edit}"
    elif kind == "postback":
        mid = _nested_str(item, "postback", "mid")
        if mid:
            return f"postback:{page_id}:{mid}"
    elif kind == "reaction":
        reaction = item["reaction"]
        material = [
            page_id,
            sender,
            reaction.get("mid"),
            reaction.get("action"),
            reaction.get("reaction"),
            item.get("timestamp"),
        ]
        return f"reaction:{_digest(_canonical(material))}"
    elif kind == "read":
        material = [page_id, sender, item["read"].get("mid"), item.get("timestamp")]
        return f"read:{_digest(_canonical(material))}"
    return f"item:{_digest(_canonical([page_id, item]))}"


def _change_event(page_id: str | None, entry_time: int | None, change: Any) -> SplitEvent:
    if not isinstance(change, dict):
        return _malformed_event(page_id, "changes", change)
    field = change.get("field")
    value = change.get("value")
    if field == "messages" and isinstance(value, dict):
        # The dashboard "Test" button sends a messaging item in the changes shape.
        event = _messaging_event(page_id, entry_time, "messaging", value)
        return SplitEvent(
            kind=event.kind,
            event_key=event.event_key,
            page_id=page_id,
            ordering_key=event.ordering_key,
            occurred_at_ms=event.occurred_at_ms,
            payload={"entry_id": page_id, "source": "changes", "field": field, "item": value},
        )
    kind, key, counterpart = _change_identity(page_id, field, value)
    return SplitEvent(
        kind=kind,
        event_key=key,
        page_id=page_id,
        ordering_key=_digest(f"{page_id}|{counterpart or key}"),
        occurred_at_ms=_as_millis(_get(value, "timestamp")) or entry_time,
        payload={"entry_id": page_id, "source": "changes", "field": field, "item": value},
    )


def _change_identity(page_id: str | None, field: Any, value: Any) -> tuple[str, str, str | None]:
    if field in ("comments", "live_comments") and isinstance(value, dict):
        comment_id = as_id(value.get("id")) or as_id(value.get("comment_id"))
        from_id = _nested_id(value, "from")
        if comment_id:
            return "comment", f"comment:{comment_id}", from_id
        return "comment", f"item:{_digest(_canonical([page_id, field, value]))}", from_id
    if field == "mentions":
        return "mention", f"item:{_digest(_canonical([page_id, field, value]))}", None
    return "change", f"item:{_digest(_canonical([page_id, field, value]))}", None


def _malformed_event(page_id: str | None, source: str, item: Any) -> SplitEvent:
    key = f"item:{_digest(_canonical([page_id, source, item]))}"
    return SplitEvent(
        kind="malformed",
        event_key=key,
        page_id=page_id,
        ordering_key=_digest(key),
        occurred_at_ms=None,
        payload={"entry_id": page_id, "source": source, "item": item},
    )


def _counterpart_id(kind: str, item: dict[str, Any]) -> str | None:
    """The patient's side of the thread: the sender, or the recipient of our own echo."""
    return _nested_id(item, "recipient" if kind == "echo" else "sender")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def as_id(value: Any) -> str | None:
    """An Instagram or Page id fit to be stored: digits or a short clean string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if -(10 ** (MAX_ID_LENGTH - 1)) < value < 10**MAX_ID_LENGTH else None
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and _storable(value):
        return value
    return None


def _as_count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    return None


def _nested_id(item: dict[str, Any], member: str) -> str | None:
    return as_id(_get(item.get(member), "id"))


def _nested_str(item: dict[str, Any], member: str, key: str) -> str | None:
    return as_key_part(_get(item.get(member), key))


def as_key_part(value: Any) -> str | None:
    """A mid (or similar) fit to be stored and keyed on; anything else is None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_KEY_PART and _storable(value):
        return value
    return None


def _storable(text: str) -> bool:
    """False for text no database column takes as a key: a lone surrogate ("\\ud800" in JSON)
    or a NUL (PostgreSQL refuses it in text)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_millis(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        # str.isdigit() also accepts digits int() refuses ("²"), so only ASCII digits count.
        digits = value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS
        value = int(value) if digits else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    # (math.isfinite would overflow on a huge int such as 10**400, which JSON can carry.)
    if not isinstance(value, int | float) or value <= 0:
        return None
    millis = int(value * 1000) if value < SECONDS_CUTOFF else int(value)
    return millis if millis < 10**14 else None
