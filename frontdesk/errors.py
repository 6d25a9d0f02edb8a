"""Typed errors the worker acts on: transient ones are retried, permanent ones fail the event."""

from __future__ import annotations


class FrontdeskError(Exception):
    """Base of Frontdesk's own errors; `reason` is a short, data-free code safe for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(FrontdeskError):
    """Might succeed later: the event is retried after a delay (at least `retry_after` seconds)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(FrontdeskError):
    """Cannot succeed by retrying: the event is marked failed with this reason."""
