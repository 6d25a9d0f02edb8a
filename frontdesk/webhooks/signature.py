"""Check Meta's X-Hub-Signature-256 over the exact raw body against every configured app secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "sha256="
HEX_DIGEST_LENGTH = 64
HEX_DIGITS = frozenset("0123456789abcdef")


def signature_is_valid(body: bytes, header: str | None, app_secrets: Sequence[bytes]) -> bool:
    """True when the header is `sha256=<64 hex digits>` and matches the body for some secret.

    Every secret is tried, whatever the outcome, so that timing says nothing about which matched.
    """
    digest = _parse_header(header)
    if digest is None:
        return False
    matched = False
    for secret in app_secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, digest)
    return matched


def _parse_header(header: str | None) -> str | None:
    if header is None or not header.startswith(PREFIX):
        return None
    digest = header[len(PREFIX) :].lower()
    if len(digest) != HEX_DIGEST_LENGTH or not HEX_DIGITS.issuperset(digest):
        return None
    return digest
