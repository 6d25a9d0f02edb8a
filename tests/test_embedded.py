"""Specification of the secrets an embedded instance generates for itself under ./var/."""

import os
import stat
from pathlib import Path

import pytest

from frontdesk.config import Settings
from frontdesk.crypto import Keyring, generate_key_spec
from frontdesk.embedded import SECRETS_FILE, secrets_path, with_embedded_secrets
from frontdesk.testing.signing import signature_for
from frontdesk.webhooks.signature import signature_is_valid

ASSOCIATED = b"test:embedded"


@pytest.fixture(autouse=True)
def no_frontdesk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read FRONTDESK_* variables; none from the surrounding shell may leak in."""
    for name in list(os.environ):
        if name.upper().startswith("FRONTDESK_"):
            monkeypatch.delenv(name)


def _settings(var_dir: Path, **values: object) -> Settings:
    return Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir / 'test.db'}", **values)  # type: ignore[arg-type]


def test_settings_built_here_start_with_no_secrets(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    assert settings.app_secrets == []
    assert settings.verify_token == ""
    assert settings.encryption_keys == []


def test_nothing_set_creates_a_private_secrets_file(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"

    _, path = with_embedded_secrets(_settings(var_dir), generate=True)

    assert path == var_dir / SECRETS_FILE == secrets_path(_settings(var_dir))
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generated_secrets_fill_every_missing_setting(tmp_path: Path) -> None:
    settings, _ = with_embedded_secrets(_settings(tmp_path), generate=True)

    assert len(settings.app_secrets) == 1
    assert len(settings.app_secrets[0]) >= 32
    assert len(settings.verify_token) >= 24
    assert len(settings.encryption_keys) == 1


def test_generated_keyring_encrypts_and_decrypts(tmp_path: Path) -> None:
    settings, _ = with_embedded_secrets(_settings(tmp_path), generate=True)

    keyring = Keyring.from_specs(settings.encryption_keys)

    sealed = keyring.encrypt_text("hola", ASSOCIATED)
    assert keyring.decrypt_text(sealed, ASSOCIATED) == "hola"


def test_generated_app_secret_verifies_signatures(tmp_path: Path) -> None:
    settings, _ = with_embedded_secrets(_settings(tmp_path), generate=True)
    body = b'{"object":"instagram","entry":[]}'
    secrets = [secret.encode() for secret in settings.app_secrets]

    assert signature_is_valid(body, signature_for(body, settings.app_secrets[0]), secrets)


def test_generated_values_are_not_returned_in_the_path(tmp_path: Path) -> None:
    settings, path = with_embedded_secrets(_settings(tmp_path), generate=True)

    assert path is not None
    assert settings.verify_token not in str(path)


def test_second_call_reuses_the_same_values(tmp_path: Path) -> None:
    first, first_path = with_embedded_secrets(_settings(tmp_path), generate=True)
    written = (tmp_path / SECRETS_FILE).read_text()

    second, second_path = with_embedded_secrets(_settings(tmp_path), generate=True)

    assert second_path == first_path
    assert second.app_secrets == first.app_secrets
    assert second.verify_token == first.verify_token
    assert second.encryption_keys == first.encryption_keys
    assert (tmp_path / SECRETS_FILE).read_text() == written


def test_existing_file_is_read_even_without_generate(tmp_path: Path) -> None:
    first, _ = with_embedded_secrets(_settings(tmp_path), generate=True)

    again, path = with_embedded_secrets(_settings(tmp_path), generate=False)

    assert path == tmp_path / SECRETS_FILE
    assert again.encryption_keys == first.encryption_keys


def test_without_generate_and_without_a_file_settings_are_unchanged(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "var")

    result, path = with_embedded_secrets(settings, generate=False)

    assert path is None
    assert result == settings
    assert result.app_secrets == []
    assert not (tmp_path / "var" / SECRETS_FILE).exists()


def test_explicitly_set_settings_are_never_overridden(tmp_path: Path) -> None:
    with_embedded_secrets(_settings(tmp_path), generate=True)  # a file with other values exists
    key = generate_key_spec()
    explicit = _settings(
        tmp_path, app_secrets=["mine"], verify_token="my-token", encryption_keys=[key]
    )

    result, path = with_embedded_secrets(explicit, generate=True)

    assert path is None
    assert result.app_secrets == ["mine"]
    assert result.verify_token == "my-token"
    assert result.encryption_keys == [key]


def test_fully_set_settings_create_no_file(tmp_path: Path) -> None:
    explicit = _settings(
        tmp_path,
        app_secrets=["mine"],
        verify_token="my-token",
        encryption_keys=[generate_key_spec()],
    )

    result, path = with_embedded_secrets(explicit, generate=True)

    assert path is None
    assert result is explicit
    assert not (tmp_path / SECRETS_FILE).exists()


def test_only_the_missing_settings_are_filled(tmp_path: Path) -> None:
    generated, _ = with_embedded_secrets(_settings(tmp_path), generate=True)
    partial = _settings(tmp_path, app_secrets=["mine"], verify_token="my-token")

    result, path = with_embedded_secrets(partial, generate=True)

    assert path == tmp_path / SECRETS_FILE
    assert result.app_secrets == ["mine"]
    assert result.verify_token == "my-token"
    assert result.encryption_keys == generated.encryption_keys


def test_values_set_through_the_environment_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONTDESK_VERIFY_TOKEN", "from-the-environment")

    result, _ = with_embedded_secrets(Settings(var_dir=tmp_path), generate=True)

    assert result.verify_token == "from-the-environment"
    assert result.app_secrets
    assert "from-the-environment" not in (tmp_path / SECRETS_FILE).read_text()


def test_secrets_file_written_by_another_process_at_the_same_moment_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two processes both see no file; the other one creates it first.
    path = tmp_path / SECRETS_FILE
    key = generate_key_spec()
    path.write_text(
        f"FRONTDESK_APP_SECRETS=theirs\nFRONTDESK_VERIFY_TOKEN=their-token\n"
        f"FRONTDESK_ENCRYPTION_KEYS={key}\n"
    )
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self == path else real_exists(self))

    result, used = with_embedded_secrets(_settings(tmp_path), generate=True)

    assert used == path
    assert result.app_secrets == ["theirs"]
    assert result.verify_token == "their-token"
    assert result.encryption_keys == [key]


def test_comments_and_blank_lines_in_the_secrets_file_are_ignored(tmp_path: Path) -> None:
    key = generate_key_spec()
    (tmp_path / SECRETS_FILE).write_text(
        "# written by an operator\n\n"
        "FRONTDESK_APP_SECRETS=old-secret,new-secret\n"
        f"FRONTDESK_ENCRYPTION_KEYS = {key}\n"
        "FRONTDESK_VERIFY_TOKEN=token\n"
    )

    result, _ = with_embedded_secrets(_settings(tmp_path), generate=False)

    assert result.app_secrets == ["old-secret", "new-secret"]
    assert result.encryption_keys == [key]
    assert result.verify_token == "token"
