"""Random secrets handed to people (session cookies, API tokens, invites) and how we store them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

TokenFactory = Callable[[], str]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """High-entropy secrets need no slow hash: sha256 lets us look them up by value."""
    return hashlib.sha256(secret.encode()).hexdigest()
