"""Specification of X-Hub-Signature-256 checking over the exact raw body."""

import hashlib
import hmac
import json

from frontdesk.testing.payloads import dm_delivery, encode
from frontdesk.testing.signing import signature_for
from frontdesk.webhooks.signature import signature_is_valid

SECRET = "current-app-secret"
OLD_SECRET = "previous-app-secret"
SECRETS = [OLD_SECRET.encode(), SECRET.encode()]
BODY = encode(dm_delivery(page_id="17841455512340001", sender="7321554890123456", text="Hola"))


def _hex(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_from_the_current_secret_is_valid() -> None:
    assert signature_is_valid(BODY, signature_for(BODY, SECRET), SECRETS)


def test_signature_from_any_one_of_several_configured_secrets_is_valid() -> None:
    assert signature_is_valid(BODY, signature_for(BODY, OLD_SECRET), SECRETS)
    assert signature_is_valid(BODY, signature_for(BODY, SECRET), [SECRET.encode()])


def test_missing_header_is_refused() -> None:
    assert not signature_is_valid(BODY, None, SECRETS)


def test_empty_header_is_refused() -> None:
    assert not signature_is_valid(BODY, "", SECRETS)


def test_legacy_sha1_header_alone_is_refused() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()

    assert not signature_is_valid(BODY, f"sha1={digest}", SECRETS)


def test_right_digest_with_a_wrong_prefix_is_refused() -> None:
    digest = _hex(BODY, SECRET)

    for header in (f"sha1={digest}", f"sha512={digest}", digest, f"SHA256={digest}"):
        assert not signature_is_valid(BODY, header, SECRETS), header


def test_uppercase_hex_of_the_same_digest_is_accepted() -> None:
    # A documented choice: hex case carries no information, so it is not held against Meta.
    assert signature_is_valid(BODY, f"sha256={_hex(BODY, SECRET).upper()}", SECRETS)


def test_truncated_digest_is_refused() -> None:
    digest = _hex(BODY, SECRET)

    assert not signature_is_valid(BODY, f"sha256={digest[:-1]}", SECRETS)
    assert not signature_is_valid(BODY, f"sha256={digest[:32]}", SECRETS)
    assert not signature_is_valid(BODY, "sha256=", SECRETS)


def test_digest_with_trailing_extra_characters_is_refused() -> None:
    assert not signature_is_valid(BODY, f"sha256={_hex(BODY, SECRET)}0", SECRETS)


def test_digest_with_non_hex_characters_is_refused() -> None:
    digest = _hex(BODY, SECRET)

    for bad in ("g" + digest[1:], digest[:-1] + "z", digest[:-1] + "é", " " + digest[1:]):
        assert len(bad) == 64
        assert not signature_is_valid(BODY, f"sha256={bad}", SECRETS), bad


def test_one_changed_body_byte_is_refused() -> None:
    header = signature_for(BODY, SECRET)
    index = BODY.index(b"Hola")
    tampered = BODY[:index] + b"h" + BODY[index + 1 :]

    assert tampered != BODY
    assert not signature_is_valid(tampered, header, SECRETS)


def test_valid_signature_from_a_secret_not_configured_is_refused() -> None:
    header = signature_for(BODY, "some-other-apps-secret")

    assert not signature_is_valid(BODY, header, SECRETS)


def test_escaped_unicode_body_is_checked_over_its_exact_raw_bytes() -> None:
    document = {"object": "instagram", "entry": [{"id": "1", "text": "Grüße ä/ö", "u": "a/b"}]}
    raw = encode(document)
    assert b"\\u00e4" in raw
    assert b"\\/" in raw
    header = signature_for(raw, SECRET)

    assert signature_is_valid(raw, header, SECRETS)
    # The same document re-serialized differently (as a framework would) no longer matches.
    reserialized = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    assert json.loads(reserialized) == json.loads(raw)
    assert not signature_is_valid(reserialized, header, SECRETS)


def test_empty_secret_list_refuses_every_signature() -> None:
    assert not signature_is_valid(BODY, signature_for(BODY, SECRET), [])
    assert not signature_is_valid(b"", signature_for(b"", ""), [])
