"""Sign webhook bodies the way Meta does, with an X-Hub-Signature-256 HMAC."""

import hashlib
import hmac


def signature_for(body: bytes, app_secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta would send for ``body``."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(body: bytes, app_secret: str) -> dict[str, str]:
    """Return the headers of a Meta webhook POST carrying ``body``."""
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature_for(body, app_secret),
    }
