"""Build Instagram webhook payloads shaped like Meta's, and encode them as Meta does."""

import json
import uuid
from time import time_ns
from typing import Literal

JSON = dict[str, object]

DEFAULT_TIMESTAMP = 1733312999312
DEFAULT_ENTRY_TIME = 1733313000456
DEFAULT_MEDIA_ID = "18000000000000400"
COMMENTER_USERNAME = "patient.user"


def encode(payload: object) -> bytes:
    """Serialize ``payload`` to the exact bytes Meta sends (and signs).

    Meta escapes non-ASCII characters (``ä`` → ``\\u00e4``) and forward slashes (``/`` →
    ``\\/``) and uses compact separators. A ``/`` can only occur inside a JSON string, so
    escaping it after serialization is safe.
    """
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


def _event(sender: str, recipient: str, timestamp: int, kind: str, body: JSON) -> JSON:
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": timestamp,
        kind: body,
    }


def message_item(
    *,
    sender: str,
    recipient: str,
    mid: str,
    text: str | None = None,
    timestamp: int = DEFAULT_TIMESTAMP,
    attachments: list[JSON] | None = None,
    is_echo: bool = False,
    reply_to_mid: str | None = None,
) -> JSON:
    """A ``messaging[]`` item carrying a message; absent optional members are omitted."""
    message: JSON = {"mid": mid}
    if text is not None:
        message["text"] = text
    if attachments is not None:
        message["attachments"] = attachments
    if is_echo:
        message["is_echo"] = True
    if reply_to_mid is not None:
        message["reply_to"] = {"mid": reply_to_mid}
    return _event(sender, recipient, timestamp, "message", message)


def echo_item(
    *, page_id: str, recipient: str, mid: str, text: str, timestamp: int = DEFAULT_TIMESTAMP
) -> JSON:
    """A ``messaging[]`` echo of a message the tenant's account sent to ``recipient``."""
    return message_item(
        sender=page_id, recipient=recipient, mid=mid, text=text, timestamp=timestamp, is_echo=True
    )


def read_item(*, sender: str, recipient: str, mid: str, timestamp: int = DEFAULT_TIMESTAMP) -> JSON:
    """A ``messaging[]`` read receipt for the message ``mid``."""
    return _event(sender, recipient, timestamp, "read", {"mid": mid})


def reaction_item(
    *,
    sender: str,
    recipient: str,
    mid: str,
    action: Literal["react", "unreact"] = "react",
    reaction: str = "love",
    emoji: str = "❤️",
    timestamp: int = DEFAULT_TIMESTAMP,
) -> JSON:
    """A ``messaging[]`` reaction on ``mid``; an unreact carries no reaction or emoji."""
    body: JSON = {"mid": mid, "action": action}
    if action == "react":
        body.update(reaction=reaction, emoji=emoji)
    return _event(sender, recipient, timestamp, "reaction", body)


def edit_item(
    *,
    sender: str,
    recipient: str,
    mid: str,
    text: str,
    num_edit: int = 1,
    timestamp: int = DEFAULT_TIMESTAMP,
) -> JSON:
    """A ``messaging[]`` edit of the message ``mid`` to ``text``."""
    body: JSON = {"mid": mid, "text": text, "num_edit": num_edit}
    return _event(sender, recipient, timestamp, "message_edit", body)


def deleted_item(
    *, sender: str, recipient: str, mid: str, timestamp: int = DEFAULT_TIMESTAMP
) -> JSON:
    """A ``messaging[]`` unsend of the message ``mid``."""
    return _event(sender, recipient, timestamp, "message", {"mid": mid, "is_deleted": True})


def postback_item(
    *,
    sender: str,
    recipient: str,
    mid: str,
    title: str,
    payload: str,
    timestamp: int = DEFAULT_TIMESTAMP,
) -> JSON:
    """A ``messaging[]`` postback (Ice Breaker or button tap)."""
    body: JSON = {"mid": mid, "title": title, "payload": payload}
    return _event(sender, recipient, timestamp, "postback", body)


def attachment(kind: str, url: str) -> JSON:
    """A ``message.attachments[]`` member of type ``kind`` pointing at ``url``."""
    return {"type": kind, "payload": {"url": url}}


def comment_change(
    *, comment_id: str, from_id: str, text: str, media_id: str = DEFAULT_MEDIA_ID
) -> JSON:
    """A ``changes[]`` comment on a feed post, in the Instagram Login shape."""
    value: JSON = {
        "id": comment_id,
        "from": {"id": from_id, "username": COMMENTER_USERNAME},
        "text": text,
        "media": {"id": media_id, "media_product_type": "FEED"},
    }
    return {"field": "comments", "value": value}


def entry(
    page_id: str,
    *,
    messaging: list[JSON] | None = None,
    standby: list[JSON] | None = None,
    changes: list[JSON] | None = None,
    time: int = DEFAULT_ENTRY_TIME,
) -> JSON:
    """An ``entry[]`` member for the account ``page_id``; lists that are None are omitted."""
    built: JSON = {"id": page_id, "time": time}
    lists = {"messaging": messaging, "standby": standby, "changes": changes}
    built.update({key: items for key, items in lists.items() if items is not None})
    return built


def delivery(*entries: JSON) -> JSON:
    """A whole webhook POST body wrapping ``entries``."""
    return {"object": "instagram", "entry": list(entries)}


def _now_ms() -> int:
    return time_ns() // 1_000_000


def dm_delivery(
    *,
    page_id: str,
    sender: str,
    text: str,
    mid: str | None = None,
    timestamp: int | None = None,
) -> JSON:
    """A webhook POST body with one inbound text DM from ``sender`` to ``page_id``.

    Without ``mid`` every call mints a fresh one; without ``timestamp`` the message is
    stamped with the current time.
    """
    sent_at = _now_ms() if timestamp is None else timestamp
    item = message_item(
        sender=sender,
        recipient=page_id,
        mid=f"m_{uuid.uuid4().hex}" if mid is None else mid,
        text=text,
        timestamp=sent_at,
    )
    return delivery(entry(page_id, messaging=[item], time=sent_at))


def dashboard_test_delivery() -> JSON:
    """The body Meta's App Dashboard "Test" button posts (not real traffic)."""
    value: JSON = {
        "sender": {"id": "12334"},
        "recipient": {"id": "23245"},
        "timestamp": "1527459824",
        "message": {"mid": "random_mid", "text": "random_text"},
    }
    change: JSON = {"field": "messages", "value": value}
    return delivery(entry("0", changes=[change], time=1733315601000))
