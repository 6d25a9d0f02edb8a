"""Specification of the webhook signer: Meta's X-Hub-Signature-256 over the raw body."""

import hashlib
import hmac

from frontdesk.testing.signing import signature_for, signed_headers

APP_SECRET = "instagram-app-secret"
BODY = b'{"object":"instagram","entry":[{"id":"17841455512340001","time":1733313000456}]}'


def test_signature_is_sha256_prefixed_hmac_of_the_body_keyed_by_the_app_secret() -> None:
    expected = hmac.new(APP_SECRET.encode("utf-8"), BODY, hashlib.sha256).hexdigest()

    assert signature_for(BODY, APP_SECRET) == f"sha256={expected}"


def test_signature_matches_the_published_hmac_sha256_test_vector() -> None:
    body = b"The quick brown fox jumps over the lazy dog"

    assert signature_for(body, "key") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_signature_hex_digest_is_lowercase() -> None:
    digest = signature_for(BODY, APP_SECRET).removeprefix("sha256=")

    assert digest == digest.lower()


def test_changing_one_body_byte_changes_the_signature() -> None:
    tampered = BODY.replace(b"0456", b"0457")

    assert signature_for(tampered, APP_SECRET) != signature_for(BODY, APP_SECRET)


def test_changing_the_app_secret_changes_the_signature() -> None:
    assert signature_for(BODY, "other-secret") != signature_for(BODY, APP_SECRET)


def test_signed_headers_declare_json_and_carry_the_signature() -> None:
    assert signed_headers(BODY, APP_SECRET) == {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature_for(BODY, APP_SECRET),
    }
