"""Specification of the keyring: AES-256-GCM bound to associated data, with key rotation."""

import base64
import itertools
from collections.abc import Callable

import pytest

from frontdesk.crypto import (
    DecryptionError,
    Key,
    Keyring,
    KeyringError,
    generate_key_spec,
    parse_key_spec,
)

ASSOCIATED = b"messages:0b6d2f4e:text"
PLAINTEXT = "Tengo dolor de muelas desde el lunes"


def _secret(fill: int) -> bytes:
    return bytes([fill]) * 32


def _spec(key_id: str, fill: int) -> str:
    return f"{key_id}:{base64.urlsafe_b64encode(_secret(fill)).decode()}"


def _counting_random_bytes() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_specs([_spec("k1", 1)])


def test_encrypted_text_decrypts_to_the_same_text(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    assert keyring.decrypt_text(sealed, ASSOCIATED) == PLAINTEXT


def test_encrypted_bytes_decrypt_to_the_same_bytes(keyring: Keyring) -> None:
    data = bytes(range(256))

    assert keyring.decrypt(keyring.encrypt(data, ASSOCIATED), ASSOCIATED) == data


def test_empty_plaintext_round_trips(keyring: Keyring) -> None:
    assert keyring.decrypt(keyring.encrypt(b"", ASSOCIATED), ASSOCIATED) == b""


def test_ciphertext_does_not_contain_the_plaintext(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    assert PLAINTEXT.encode() not in sealed
    assert b"dolor" not in sealed


def test_decrypting_with_other_associated_data_fails(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    with pytest.raises(DecryptionError):
        keyring.decrypt_text(sealed, b"messages:another-row:text")
    with pytest.raises(DecryptionError):
        keyring.decrypt_text(sealed, b"")


def test_every_tampered_byte_fails_decryption(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            keyring.decrypt(bytes(tampered), ASSOCIATED)


def test_every_truncation_fails_decryption(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    for length in range(len(sealed)):
        with pytest.raises(DecryptionError):
            keyring.decrypt(sealed[:length], ASSOCIATED)


def test_unknown_format_version_fails_decryption(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    with pytest.raises(DecryptionError, match="format"):
        keyring.decrypt(b"\x02" + sealed[1:], ASSOCIATED)


def test_ciphertext_names_the_key_that_made_it(keyring: Keyring) -> None:
    sealed = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    assert sealed[:4] == bytes([1, 2]) + b"k1"


def test_ciphertext_from_the_old_key_decrypts_after_rotation() -> None:
    old = Keyring.from_specs([_spec("old", 1)])
    sealed_with_old = old.encrypt_text(PLAINTEXT, ASSOCIATED)

    rotated = Keyring.from_specs([_spec("new", 2), _spec("old", 1)])

    assert rotated.decrypt_text(sealed_with_old, ASSOCIATED) == PLAINTEXT
    assert rotated.primary_key_id == "new"
    sealed_with_new = rotated.encrypt_text(PLAINTEXT, ASSOCIATED)
    assert sealed_with_new[2:5] == b"new"
    with pytest.raises(DecryptionError, match="no key"):
        old.decrypt_text(sealed_with_new, ASSOCIATED)


def test_ciphertext_from_a_key_not_in_the_keyring_fails_decryption() -> None:
    sealed = Keyring.from_specs([_spec("gone", 1)]).encrypt_text(PLAINTEXT, ASSOCIATED)

    with pytest.raises(DecryptionError):
        Keyring.from_specs([_spec("k2", 2)]).decrypt_text(sealed, ASSOCIATED)


def test_same_key_id_with_another_secret_fails_decryption() -> None:
    sealed = Keyring.from_specs([_spec("k1", 1)]).encrypt_text(PLAINTEXT, ASSOCIATED)

    with pytest.raises(DecryptionError):
        Keyring.from_specs([_spec("k1", 9)]).decrypt_text(sealed, ASSOCIATED)


def test_two_encryptions_of_the_same_text_differ_by_their_nonce() -> None:
    keyring = Keyring([parse_key_spec(_spec("k1", 1))], random_bytes=_counting_random_bytes())

    first = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)
    second = keyring.encrypt_text(PLAINTEXT, ASSOCIATED)

    assert first != second
    assert first[4:16] == (1).to_bytes(12, "big")
    assert second[4:16] == (2).to_bytes(12, "big")
    assert keyring.decrypt_text(first, ASSOCIATED) == keyring.decrypt_text(second, ASSOCIATED)


def test_the_same_nonce_gives_the_same_ciphertext() -> None:
    # Shows the nonce is the only source of difference, so it must come from random_bytes.
    fixed = Keyring([parse_key_spec(_spec("k1", 1))], random_bytes=lambda size: b"\x00" * size)

    assert fixed.encrypt_text(PLAINTEXT, ASSOCIATED) == fixed.encrypt_text(PLAINTEXT, ASSOCIATED)


def test_default_nonces_are_random(keyring: Keyring) -> None:
    sealed = {keyring.encrypt_text(PLAINTEXT, ASSOCIATED) for _ in range(20)}

    assert len(sealed) == 20


def test_empty_keyring_is_refused() -> None:
    with pytest.raises(KeyringError):
        Keyring([])
    with pytest.raises(KeyringError):
        Keyring.from_specs([])


def test_key_spec_with_an_id_keeps_that_id() -> None:
    key = parse_key_spec(_spec("2026-01", 7))

    assert key == Key(key_id="2026-01", secret=_secret(7))


def test_bare_base64_key_spec_derives_a_stable_id() -> None:
    bare = base64.urlsafe_b64encode(_secret(7)).decode()

    key = parse_key_spec(bare)

    assert key.secret == _secret(7)
    assert len(key.key_id) == 8
    assert key.key_id == parse_key_spec(bare.rstrip("=")).key_id
    assert key.key_id != parse_key_spec(base64.urlsafe_b64encode(_secret(8)).decode()).key_id


def test_key_spec_surrounding_whitespace_is_ignored() -> None:
    assert parse_key_spec(f"  {_spec('k1', 1)}\n") == parse_key_spec(_spec("k1", 1))


def test_generated_key_spec_parses_into_a_working_key() -> None:
    spec = generate_key_spec(random_bytes=lambda size: b"\x05" * size)

    key = parse_key_spec(spec)

    assert key.secret == b"\x05" * 32
    assert spec.startswith(f"{key.key_id}:")
    keyring = Keyring([key])
    assert keyring.decrypt_text(keyring.encrypt_text("x", ASSOCIATED), ASSOCIATED) == "x"


def test_generated_key_specs_differ() -> None:
    assert generate_key_spec() != generate_key_spec()


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "k1:",
        f"k1:{base64.urlsafe_b64encode(b'x' * 16).decode()}",
        f"k1:{base64.urlsafe_b64encode(b'x' * 31).decode()}",
        f"k1:{base64.urlsafe_b64encode(b'x' * 33).decode()}",
        f"k1:{base64.urlsafe_b64encode(b'x' * 64).decode()}",
    ],
)
def test_key_of_the_wrong_length_is_refused(spec: str) -> None:
    with pytest.raises(KeyringError, match="32 bytes"):
        parse_key_spec(spec)


@pytest.mark.parametrize("encoded", ["A", "AAAAA", "ключ" * 11])
def test_key_that_is_not_base64_is_refused(encoded: str) -> None:
    with pytest.raises(KeyringError, match="base64"):
        parse_key_spec(f"k1:{encoded}")


def test_key_id_too_long_for_the_ciphertext_header_is_refused() -> None:
    with pytest.raises(KeyringError):
        parse_key_spec(_spec("k" * 256, 1))


def test_one_bad_spec_refuses_the_whole_keyring() -> None:
    with pytest.raises(KeyringError):
        Keyring.from_specs([_spec("k1", 1), "k2:short"])
