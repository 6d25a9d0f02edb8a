"""Specification of the audit metadata guard and of hashing outside identifiers."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from frontdesk.audit import (
    FORBIDDEN_METADATA_KEYS,
    AuditMetadataError,
    check_metadata,
    hash_identifier,
)

PAGE_ID = "17841455512340001"


@pytest.mark.parametrize(
    "key",
    [
        "text",
        "message",
        "body",
        "payload",
        "token",
        "access_token",
        "sender_id",
        "recipient_id",
        "page_id",
        "igsid",
        "patient_name",
        "username",
        "secret",
        "email",
        "url",
    ],
)
def test_forbidden_key_at_the_top_level_is_refused(key: str) -> None:
    with pytest.raises(AuditMetadataError):
        check_metadata({"events": 1, key: "x"})


def test_every_listed_forbidden_key_is_refused() -> None:
    for key in FORBIDDEN_METADATA_KEYS:
        with pytest.raises(AuditMetadataError):
            check_metadata({key: None})


def test_forbidden_key_is_refused_whatever_its_case() -> None:
    with pytest.raises(AuditMetadataError):
        check_metadata({"Sender_ID": "1"})
    with pytest.raises(AuditMetadataError):
        check_metadata({"TOKEN": "1"})


@pytest.mark.parametrize(
    "metadata",
    [
        {"graph": {"token": "IGAA"}},
        {"a": {"b": {"c": {"text": "hola"}}}},
        {"sends": [{"ok": True}, {"sender_id": "7321554890123456"}]},
        {"outer": {"sends": [{"nested": {"page_id": PAGE_ID}}]}},
    ],
)
def test_forbidden_key_at_any_depth_is_refused(metadata: dict[str, Any]) -> None:
    with pytest.raises(AuditMetadataError):
        check_metadata(metadata)


def test_refusal_names_where_the_forbidden_key_was_but_not_its_value() -> None:
    with pytest.raises(AuditMetadataError) as raised:
        check_metadata({"sends": [{"ok": 1}, {"text": "patient says hola"}]})

    assert "sends[1].text" in str(raised.value)
    assert "hola" not in str(raised.value)


class _Patient:
    def __str__(self) -> str:
        return "Maria Lopez"


@pytest.mark.parametrize(
    "value",
    [b"raw bytes", bytearray(b"x"), _Patient(), datetime(2026, 1, 1, tzinfo=UTC), {1, 2}, (1, 2)],
    ids=repr,
)
def test_value_that_is_not_a_plain_scalar_is_refused(value: object) -> None:
    with pytest.raises(AuditMetadataError, match="non-scalar"):
        check_metadata({"thing": value})


@pytest.mark.parametrize(
    "value", [[b"raw"], [_Patient()], [[1, 2]], [{"ok": 1}, {"deeper": b"x"}]], ids=repr
)
def test_non_scalar_inside_a_list_is_refused(value: list[object]) -> None:
    with pytest.raises(AuditMetadataError):
        check_metadata({"things": value})


def test_string_longer_than_128_characters_is_refused() -> None:
    check_metadata({"note": "x" * 128})

    with pytest.raises(AuditMetadataError, match="too long"):
        check_metadata({"note": "x" * 129})


def test_long_string_is_refused_at_any_depth_and_inside_lists() -> None:
    long_text = "Me duele el pecho desde ayer por la noche " * 4
    assert len(long_text) > 128

    for metadata in (
        {"nested": {"note": long_text}},
        {"notes": [long_text]},
        {"sends": [{"note": long_text}]},
    ):
        with pytest.raises(AuditMetadataError, match="too long"):
            check_metadata(metadata)


def test_ids_hashes_counts_and_booleans_are_accepted() -> None:
    check_metadata(
        {
            "delivery_id": 42,
            "doctor_row": "0b6d2f4e-8a9c-4d0e-9f5b-3f2a1c7e6d5b",
            "page_hash": hash_identifier(PAGE_ID),
            "body_sha256": "ab" * 32,
            "events": 3,
            "duplicates": 0,
            "ratio": 0.5,
            "recognized": True,
            "reason": None,
            "event_ids": [1, 2, 3],
            "graph": {"attempts": 2, "status": 500, "retried": False},
            "sends": [{"event_id": 1, "ok": True}],
        }
    )


def test_empty_metadata_is_accepted() -> None:
    check_metadata({})


def test_hash_identifier_is_16_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", hash_identifier(PAGE_ID))


def test_hash_identifier_is_stable_across_calls_and_processes() -> None:
    # Pinned: rows written by one release must be matched by the next.
    assert hash_identifier(PAGE_ID) == hash_identifier(PAGE_ID) == "d84ad27e04118cc4"


def test_hash_identifier_does_not_contain_the_input() -> None:
    for value in (PAGE_ID, "7321554890123456", "abc", "doctor-page"):
        assert value not in hash_identifier(value)


def test_hash_identifier_differs_for_different_inputs() -> None:
    assert hash_identifier(PAGE_ID) != hash_identifier("17841455512340002")
