"""Keyring and AES-256-GCM encryption of data at rest, bound to its row by associated data."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_VERSION = 1


class KeyringError(ValueError):
    """The configured encryption keys cannot be used."""


class DecryptionError(Exception):
    """A ciphertext could not be decrypted: unknown key id, wrong associated data or tampering."""


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes


def generate_key_spec(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new keyring entry in the `KEY_ID:BASE64` form that FRONTDESK_ENCRYPTION_KEYS takes."""
    secret = random_bytes(KEY_BYTES)
    return f"{_key_id_for(secret)}:{base64.urlsafe_b64encode(secret).decode()}"


def _key_id_for(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:8]


def parse_key_spec(spec: str) -> Key:
    """Read one keyring entry: `KEY_ID:BASE64` or bare base64 (its id is derived from the key)."""
    key_id, _, encoded = spec.strip().rpartition(":")
    try:
        secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError as exc:
        raise KeyringError("an encryption key is not valid base64") from exc
    if len(secret) != KEY_BYTES:
        raise KeyringError(f"an encryption key must be {KEY_BYTES} bytes, got {len(secret)}")
    key_id = key_id or _key_id_for(secret)
    if not 0 < len(key_id.encode()) < 256:
        raise KeyringError("an encryption key id must be 1 to 255 bytes")
    return Key(key_id=key_id, secret=secret)


class Keyring:
    """Encrypts with the first key and decrypts with whichever key id a ciphertext names."""

    def __init__(self, keys: Sequence[Key], random_bytes: Callable[[int], bytes] = os.urandom):
        if not keys:
            raise KeyringError("the keyring needs at least one encryption key")
        self._primary = keys[0]
        self._by_id = {key.key_id: AESGCM(key.secret) for key in keys}
        self._random_bytes = random_bytes

    @classmethod
    def from_specs(cls, specs: Sequence[str]) -> Keyring:
        return cls([parse_key_spec(spec) for spec in specs])

    @property
    def primary_key_id(self) -> str:
        return self._primary.key_id

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Layout: version byte, key-id length byte, key id, nonce, ciphertext with tag."""
        key_id = self._primary.key_id.encode()
        nonce = self._random_bytes(NONCE_BYTES)
        sealed = self._by_id[self._primary.key_id].encrypt(nonce, plaintext, associated_data)
        return bytes([FORMAT_VERSION, len(key_id)]) + key_id + nonce + sealed

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        if len(ciphertext) < 2 or ciphertext[0] != FORMAT_VERSION:
            raise DecryptionError("unknown ciphertext format")
        id_end = 2 + ciphertext[1]
        key_id = ciphertext[2:id_end].decode(errors="replace")
        cipher = self._by_id.get(key_id)
        if cipher is None:
            raise DecryptionError(f"no key with id {key_id!r} in the keyring")
        if len(ciphertext) < id_end + NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("ciphertext is truncated")
        nonce = ciphertext[id_end : id_end + NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, ciphertext[id_end + NONCE_BYTES :], associated_data)
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication") from exc

    def derive_key(self, purpose: str) -> bytes:
        """A key for one purpose (signing OAuth state, say), derived from the primary key."""
        return HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
        ).derive(self._primary.secret)

    def encrypt_text(self, text: str, associated_data: bytes) -> bytes:
        return self.encrypt(text.encode(), associated_data)

    def decrypt_text(self, ciphertext: bytes, associated_data: bytes) -> str:
        return self.decrypt(ciphertext, associated_data).decode()
