"""The names under which patient data or secrets travel; logs redact them, audit refuses them."""

from __future__ import annotations

SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "app_secret",
        "authorization",
        "body",
        "code",
        "email",
        "from",
        "igsid",
        "message",
        "message_text",
        "name",
        "page_id",
        "password",
        "patient_name",
        "payload",
        "platform_user_id",
        "query",
        "raw_body",
        "recipient",
        "recipient_id",
        "secret",
        "sender",
        "sender_id",
        "state",
        "text",
        "token",
        "url",
        "username",
    }
)
