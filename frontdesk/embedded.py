"""Secrets for an embedded instance with no settings: generated once into ./var/ (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from frontdesk.config import Settings
from frontdesk.crypto import generate_key_spec

SECRETS_FILE = "secrets.env"
GENERATED = ("app_secrets", "verify_token", "encryption_keys")


def secrets_path(settings: Settings) -> Path:
    return settings.var_dir / SECRETS_FILE


def with_embedded_secrets(settings: Settings, *, generate: bool) -> tuple[Settings, Path | None]:
    """Fill unset secrets from ./var/secrets.env, creating it first when `generate` is set.

    Returns the completed settings and the file's path when it was used (never the values).
    """
    missing = [name for name in GENERATED if not getattr(settings, name)]
    if not missing:
        return settings, None
    path = secrets_path(settings)
    if not path.exists():
        if not generate:
            return settings, None
        _write_new_secrets(path)
    stored = _read_env_file(path)
    updates: dict[str, object] = {}
    for name in missing:
        value = stored.get(f"FRONTDESK_{name.upper()}", "")
        if value:
            updates[name] = value.split(",") if name != "verify_token" else value
    return settings.model_copy(update=updates), path


def _write_new_secrets(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"FRONTDESK_APP_SECRETS={secrets.token_hex(32)}",
        f"FRONTDESK_VERIFY_TOKEN={secrets.token_urlsafe(24)}",
        f"FRONTDESK_ENCRYPTION_KEYS={generate_key_spec()}",
    ]
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process starting at the same moment wrote it first; use theirs
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values
