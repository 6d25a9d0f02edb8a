"""Password hashing with argon2id; unknown emails are checked against a dummy, as slow as known."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from frontdesk.errors import FrontdeskError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anybody has")


class WeakPasswordError(FrontdeskError):
    """The password is too short or too long."""


def hash_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Always runs one argon2 verification, so timing does not tell whether an account exists."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
