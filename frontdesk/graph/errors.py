"""Meta Graph API errors, classified into what the worker should do about them."""

from __future__ import annotations

import math
from typing import Any

from frontdesk.errors import PermanentError, TransientError

TOKEN_REJECTED_CODE = 190
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80002, 80006})
TEMPORARY_CODES = frozenset({1, 2, 1200})
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2534022})
USER_UNAVAILABLE_CODE = 551
PERMISSION_CODES = frozenset({10, 200, 230})


class GraphTransientError(TransientError):
    """Rate limit, temporary Meta failure, 5xx or timeout: retry later."""


class GraphPermanentError(PermanentError):
    """Meta refused for good: window closed, user unavailable, permission, bad input."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class TokenRejectedError(GraphPermanentError):
    """Code 190: the doctor's token is expired or revoked; the connection needs re-authorisation."""


def classify_error(status: int, body: Any, retry_after: float | None) -> Exception:
    """The error to raise for a non-2xx Graph response."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    if code == TOKEN_REJECTED_CODE:
        return TokenRejectedError("token_rejected", code=code)
    if status == 429 or code in RATE_LIMIT_CODES:
        return GraphTransientError(f"rate_limited:{code or status}", retry_after=retry_after)
    if code in TEMPORARY_CODES or status >= 500:
        return GraphTransientError(f"graph_unavailable:{code or status}", retry_after=retry_after)
    if subcode in OUTSIDE_WINDOW_SUBCODES:
        return GraphPermanentError("outside_messaging_window", code=code)
    if code == USER_UNAVAILABLE_CODE:
        return GraphPermanentError("recipient_unavailable", code=code)
    if code in PERMISSION_CODES:
        return GraphPermanentError(f"permission_denied:{code}", code=code)
    return GraphPermanentError(f"graph_rejected:{code or status}", code=code)


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
