"""Specification of turning one Meta delivery into its events, and of reading the body as JSON."""

import copy
import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frontdesk.testing import payloads
from frontdesk.webhooks.split import (
    PayloadNotJsonError,
    SplitDelivery,
    SplitEvent,
    parse_json,
    split_delivery,
)

PAGE_A = "17841455512340001"
PAGE_B = "17841466698760002"
FACEBOOK_PAGE = "104000000000001"
PATIENT = "7321554890123456"
OTHER_PATIENT = "8899001122334455"
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDU1NTEyMzQwMDAxOjAwMDEw"
OTHER_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDU1NTEyMzQwMDAxOjAwMDEx"
TIMESTAMP = 1733312999312
ENTRY_TIME = payloads.DEFAULT_ENTRY_TIME
HEX40 = re.compile(r"[0-9a-f]{40}")


def _split(document: object) -> SplitDelivery:
    """Split the way intake does: through the exact bytes Meta sends."""
    return split_delivery(parse_json(payloads.encode(document)))


def _one(document: object) -> SplitEvent:
    events = _split(document).events
    assert len(events) == 1
    return events[0]


def _single_item(item: dict[str, object], page_id: str = PAGE_A) -> SplitEvent:
    return _one(payloads.delivery(payloads.entry(page_id, messaging=[item])))


def _message(
    mid: str = MID, *, sender: str = PATIENT, recipient: str = PAGE_A, timestamp: int = TIMESTAMP
) -> dict[str, object]:
    return payloads.message_item(
        sender=sender, recipient=recipient, mid=mid, text="Hola", timestamp=timestamp
    )


def _with_timestamp(timestamp: object) -> dict[str, object]:
    item = _message()
    item["timestamp"] = timestamp
    return item


# --- splitting ---------------------------------------------------------------------------------


def test_batch_of_two_entries_gives_one_event_per_item_with_the_entry_id_as_page_id() -> None:
    document = payloads.delivery(
        payloads.entry(
            PAGE_A,
            messaging=[
                _message(MID),
                _message(OTHER_MID),
                payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID),
            ],
        ),
        payloads.entry(
            PAGE_B,
            messaging=[
                _message("m_b1", sender=OTHER_PATIENT, recipient=PAGE_B),
                payloads.reaction_item(sender=OTHER_PATIENT, recipient=PAGE_B, mid="m_b1"),
            ],
        ),
    )

    split = _split(document)

    assert split.recognized
    assert [(event.page_id, event.kind) for event in split.events] == [
        (PAGE_A, "message"),
        (PAGE_A, "message"),
        (PAGE_A, "read"),
        (PAGE_B, "message"),
        (PAGE_B, "reaction"),
    ]
    assert len({event.event_key for event in split.events}) == 5


def test_messaging_standby_and_changes_items_all_become_events() -> None:
    document = payloads.delivery(
        payloads.entry(
            PAGE_A,
            messaging=[_message(MID)],
            standby=[_message(OTHER_MID)],
            changes=[payloads.comment_change(comment_id="1790001", from_id=PATIENT, text="hi")],
        )
    )

    events = _split(document).events

    assert sorted(event.kind for event in events) == ["comment", "message", "standby_message"]
    assert {event.payload["source"] for event in events} == {"messaging", "standby", "changes"}
    assert all(event.page_id == PAGE_A for event in events)


def test_standby_items_get_standby_prefixed_kinds_and_keys() -> None:
    document = payloads.delivery(
        payloads.entry(
            PAGE_A,
            standby=[
                _message(MID),
                payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID),
            ],
        )
    )

    message, read = _split(document).events

    assert message.kind == "standby_message"
    assert message.event_key == f"standby:message:{PAGE_A}:{MID}"
    assert read.kind == "standby_read"
    assert read.event_key.startswith("standby:read:")


def test_standby_copy_of_a_message_does_not_collide_with_the_messaging_copy() -> None:
    primary = _single_item(_message(MID))
    standby = _one(payloads.delivery(payloads.entry(PAGE_A, standby=[_message(MID)])))

    assert standby.event_key != primary.event_key
    assert standby.ordering_key == primary.ordering_key


def test_comment_change_is_keyed_by_comment_id_and_ordered_with_its_author() -> None:
    change = payloads.comment_change(comment_id="17900000000000001", from_id=PATIENT, text="hey")
    event = _one(payloads.delivery(payloads.entry(PAGE_A, changes=[change])))
    inbound = _single_item(_message())

    assert event.kind == "comment"
    assert event.event_key == "comment:17900000000000001"
    assert event.ordering_key == inbound.ordering_key
    assert event.occurred_at_ms == ENTRY_TIME


def test_unknown_change_field_still_becomes_an_event() -> None:
    change: dict[str, object] = {"field": "story_insights", "value": {"media_id": "1", "reach": 3}}

    event = _one(payloads.delivery(payloads.entry(PAGE_A, changes=[change])))

    assert event.kind == "change"
    assert event.event_key.startswith("item:")


def test_dashboard_test_delivery_is_a_message_for_page_zero_stamped_from_string_seconds() -> None:
    event = _one(payloads.dashboard_test_delivery())

    assert event.kind == "message"
    assert event.page_id == "0"
    assert event.event_key == "message:0:random_mid"
    assert event.occurred_at_ms == 1527459824 * 1000
    assert event.payload["source"] == "changes"
    assert event.payload["field"] == "messages"


def test_dashboard_test_delivery_shares_a_key_with_the_same_item_in_messaging_shape() -> None:
    dashboard = _one(payloads.dashboard_test_delivery())
    value = payloads.dashboard_test_delivery()["entry"][0]["changes"][0]["value"]  # type: ignore[index]
    messaging = _single_item(value, page_id="0")

    assert dashboard.event_key == messaging.event_key
    assert dashboard.ordering_key == messaging.ordering_key


def test_payload_keeps_the_item_and_its_entry_id() -> None:
    item = _message()

    event = _single_item(item)

    assert event.payload == {"entry_id": PAGE_A, "source": "messaging", "item": item}


# --- event keys --------------------------------------------------------------------------------


def test_message_key_is_its_entry_id_and_mid() -> None:
    assert _single_item(_message(MID)).event_key == f"message:{PAGE_A}:{MID}"


def test_same_mid_under_two_entry_ids_gets_two_keys() -> None:
    # Clinic A writing to clinic B: A's echo and B's message share the mid; neither may be lost.
    # (A dual subscription's second copy is absorbed later, by the message's own unique key.)
    as_instagram = _single_item(_message(MID, recipient=PAGE_A), page_id=PAGE_A)
    as_facebook = _single_item(_message(MID, recipient=FACEBOOK_PAGE), page_id=FACEBOOK_PAGE)

    assert as_instagram.event_key == f"message:{PAGE_A}:{MID}"
    assert as_facebook.event_key == f"message:{FACEBOOK_PAGE}:{MID}"


def test_deleted_key_names_the_mid_and_differs_from_the_original_message_key() -> None:
    original = _single_item(_message(MID))
    deleted = _single_item(payloads.deleted_item(sender=PATIENT, recipient=PAGE_A, mid=MID))

    assert deleted.kind == "deleted"
    assert deleted.event_key == f"deleted:{PAGE_A}:{MID}"
    assert deleted.event_key != original.event_key


def test_echo_is_keyed_by_its_mid_like_any_message() -> None:
    echo = _single_item(payloads.echo_item(page_id=PAGE_A, recipient=PATIENT, mid=MID, text="ok"))

    assert echo.kind == "echo"
    assert echo.event_key == f"message:{PAGE_A}:{MID}"


def test_edit_key_includes_the_edit_number() -> None:
    first = _single_item(
        payloads.edit_item(sender=PATIENT, recipient=PAGE_A, mid=MID, text="a", num_edit=1)
    )
    second = _single_item(
        payloads.edit_item(sender=PATIENT, recipient=PAGE_A, mid=MID, text="b", num_edit=2)
    )

    assert first.kind == "edit"
    assert first.event_key == f"edit:{PAGE_A}:{MID}:1"
    assert second.event_key == f"edit:{PAGE_A}:{MID}:2"


def test_postback_key_is_its_mid() -> None:
    item = payloads.postback_item(
        sender=PATIENT, recipient=PAGE_A, mid=MID, title="Book", payload="BOOK"
    )

    event = _single_item(item)

    assert event.kind == "postback"
    assert event.event_key == f"postback:{PAGE_A}:{MID}"


def test_reaction_key_is_hashed_stable_and_holds_no_sender_id() -> None:
    item = payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID)

    first = _single_item(item)
    again = _single_item(copy.deepcopy(item))

    assert first.kind == "reaction"
    assert first.event_key == again.event_key
    assert re.fullmatch(r"reaction:[0-9a-f]{40}", first.event_key)
    assert PATIENT not in first.event_key
    assert MID not in first.event_key


def test_read_key_is_hashed_stable_and_holds_no_sender_id() -> None:
    item = payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID)

    first = _single_item(item)
    again = _single_item(copy.deepcopy(item))

    assert first.kind == "read"
    assert first.event_key == again.event_key
    assert re.fullmatch(r"read:[0-9a-f]{40}", first.event_key)
    assert PATIENT not in first.event_key


def test_changed_reaction_gets_a_different_key() -> None:
    react = payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID)
    keys = {
        _single_item(react).event_key,
        _single_item(
            payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID, action="unreact")
        ).event_key,
        _single_item(
            payloads.reaction_item(sender=OTHER_PATIENT, recipient=PAGE_A, mid=MID)
        ).event_key,
        _single_item(
            payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID, timestamp=1)
        ).event_key,
        _single_item(react, page_id=PAGE_B).event_key,
    }

    assert len(keys) == 5


def test_changed_read_gets_a_different_key() -> None:
    read = payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID)
    later = payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID, timestamp=TIMESTAMP + 1)
    other = payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=OTHER_MID)

    keys = {_single_item(item).event_key for item in (read, later, other)}

    assert len(keys) == 3


def test_changed_item_of_an_unknown_kind_gets_a_different_key() -> None:
    first = _single_item({"sender": {"id": PATIENT}, "something_new": {"x": 1}})
    again = _single_item({"sender": {"id": PATIENT}, "something_new": {"x": 1}})
    changed = _single_item({"sender": {"id": PATIENT}, "something_new": {"x": 2}})

    assert first.kind == "other"
    assert first.event_key == again.event_key
    assert first.event_key != changed.event_key
    assert first.event_key.startswith("item:")


def test_message_without_a_mid_is_keyed_by_a_hash_of_the_item() -> None:
    item = _message()
    item["message"] = {"text": "no mid"}

    event = _single_item(item)

    assert event.kind == "message"
    assert re.fullmatch(r"item:[0-9a-f]{40}", event.event_key)


def test_oversized_mid_is_not_used_as_a_key() -> None:
    event = _single_item(_message("m" * 1000))

    assert event.event_key.startswith("item:")
    assert len(event.event_key) <= 300


def test_mid_with_a_lone_surrogate_is_not_used_as_a_key() -> None:
    body = (
        b'{"object":"instagram","entry":[{"id":"1","messaging":'
        b'[{"sender":{"id":"2"},"message":{"mid":"m\\ud800"}}]}]}'
    )

    (event,) = split_delivery(parse_json(body)).events

    assert event.event_key.startswith("item:")
    event.event_key.encode("utf-8")  # storable


def test_edit_number_that_is_not_a_count_keeps_the_key_short() -> None:
    item = payloads.edit_item(sender=PATIENT, recipient=PAGE_A, mid="m" * 200, text="a")
    item["message_edit"]["num_edit"] = "9" * 500  # type: ignore[index]

    event = _single_item(item)

    assert event.event_key == f"edit:{PAGE_A}:{'m' * 200}:None"
    assert len(event.event_key) <= 300


def test_oversized_entry_id_is_not_used_as_page_id() -> None:
    event = _single_item(_message(), page_id="1" * 65)
    numeric = split_delivery(
        {"object": "instagram", "entry": [{"id": 10**70, "messaging": [_message()]}]}
    ).events[0]

    assert event.page_id is None
    assert numeric.page_id is None


def test_numeric_entry_id_is_read_as_its_digits() -> None:
    document = {"object": "instagram", "entry": [{"id": 17841455512340001, "messaging": [{}]}]}

    (event,) = split_delivery(document).events

    assert event.page_id == PAGE_A


# --- ordering ----------------------------------------------------------------------------------


def test_echo_is_ordered_with_the_inbound_messages_of_the_same_patient_and_page() -> None:
    inbound = _single_item(_message(MID))
    echo = _single_item(
        payloads.echo_item(page_id=PAGE_A, recipient=PATIENT, mid=OTHER_MID, text="Hi")
    )

    assert echo.ordering_key == inbound.ordering_key
    assert HEX40.fullmatch(inbound.ordering_key)


def test_read_and_reaction_are_ordered_with_the_patients_conversation() -> None:
    inbound = _single_item(_message(MID))
    read = _single_item(payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID))
    reaction = _single_item(payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID))

    assert read.ordering_key == reaction.ordering_key == inbound.ordering_key


def test_other_patient_or_other_page_is_another_conversation() -> None:
    inbound = _single_item(_message(MID))
    other_patient = _single_item(_message(MID, sender=OTHER_PATIENT))
    other_page = _single_item(_message(MID, recipient=PAGE_B), page_id=PAGE_B)

    assert len({inbound.ordering_key, other_patient.ordering_key, other_page.ordering_key}) == 3


# --- documents that are not Meta's envelope ----------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        [],
        [{"object": "instagram", "entry": []}],
        "instagram",
        42,
        None,
        {},
        {"object": "page", "entry": [payloads.entry(PAGE_A, messaging=[_message()])]},
        {"object": "instagram"},
        {"object": "instagram", "entry": None},
        {"object": "instagram", "entry": {"id": PAGE_A, "messaging": [_message()]}},
        {"object": "instagram", "entry": "[]"},
        {"entry": [payloads.entry(PAGE_A, messaging=[_message()])]},
    ],
    ids=lambda document: json.dumps(document)[:40],
)
def test_document_that_is_not_an_envelope_is_unrecognized_and_has_no_events(
    document: Any,
) -> None:
    assert split_delivery(document) == SplitDelivery(recognized=False, events=[])


def test_envelope_with_no_entries_is_recognized_with_no_events() -> None:
    assert split_delivery(payloads.delivery()) == SplitDelivery(recognized=True, events=[])


def test_entry_without_any_item_lists_gives_no_events() -> None:
    document = payloads.delivery(payloads.entry(PAGE_A))

    assert _split(document) == SplitDelivery(recognized=True, events=[])


@pytest.mark.parametrize("entry", ["entry", 7, None, [1, 2], True])
def test_entry_that_is_not_an_object_becomes_a_malformed_event(entry: object) -> None:
    document = {"object": "instagram", "entry": [entry, payloads.entry(PAGE_A, messaging=[{}])]}

    malformed, other = split_delivery(document).events

    assert malformed.kind == "malformed"
    assert malformed.page_id is None
    assert malformed.payload == {"entry_id": None, "source": "entry", "item": entry}
    assert other.kind == "other"


@pytest.mark.parametrize("source", ["messaging", "standby", "changes"])
def test_items_that_are_not_objects_become_malformed_events(source: str) -> None:
    items: list[object] = ["text", 3, None, [], False]
    document = {"object": "instagram", "entry": [{"id": PAGE_A, source: items}]}

    events = split_delivery(document).events

    assert [event.kind for event in events] == ["malformed"] * len(items)
    assert [event.payload["item"] for event in events] == items
    assert all(event.page_id == PAGE_A for event in events)
    assert len({event.event_key for event in events}) == len(items)


def test_item_lists_that_are_not_lists_are_skipped() -> None:
    document = {
        "object": "instagram",
        "entry": [{"id": PAGE_A, "messaging": {"0": _message()}, "standby": "x", "changes": 1}],
    }

    assert split_delivery(document) == SplitDelivery(recognized=True, events=[])


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (TIMESTAMP, TIMESTAMP),
        (1733312999312.75, TIMESTAMP),
        (1733312999.312, TIMESTAMP),
        (1733312999, 1733312999000),
        (str(TIMESTAMP), TIMESTAMP),
        ("1733312999", 1733312999000),
        (99_999_999_999, 99_999_999_999_000),  # just below the cutoff: seconds
        (100_000_000_000, 100_000_000_000),  # at the cutoff: milliseconds
        (1, 1000),
    ],
)
def test_item_timestamp_in_milliseconds_or_seconds_is_read_as_milliseconds(
    timestamp: object, expected: int
) -> None:
    assert _single_item(_with_timestamp(timestamp)).occurred_at_ms == expected


BAD_TIMESTAMPS = [
    True,
    False,
    -5,
    0,
    -1.5,
    math.nan,
    math.inf,
    -math.inf,
    10**15,
    10**400,
    1e300,
    "",
    "12a",
    "-1733312999",
    "1733312999.5",
    "²",
    "١٧٣٣٣١٢٩٩٩",
    "9" * 30,
    None,
    [TIMESTAMP],
    {"ms": TIMESTAMP},
]


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS, ids=repr)
def test_unusable_item_timestamp_falls_back_to_the_entry_time(timestamp: object) -> None:
    document = payloads.delivery(payloads.entry(PAGE_A, messaging=[_with_timestamp(timestamp)]))

    (event,) = split_delivery(document).events

    assert event.occurred_at_ms == ENTRY_TIME


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS, ids=repr)
def test_unusable_item_and_entry_timestamps_give_no_time(timestamp: object) -> None:
    document = {
        "object": "instagram",
        "entry": [{"id": PAGE_A, "time": timestamp, "messaging": [_with_timestamp(timestamp)]}],
    }

    (event,) = split_delivery(document).events

    assert event.occurred_at_ms is None


def test_missing_item_timestamp_uses_the_entry_time_in_seconds_or_milliseconds() -> None:
    item = _message()
    del item["timestamp"]
    in_seconds = payloads.delivery(payloads.entry(PAGE_A, messaging=[item], time=1733313000))
    in_ms = payloads.delivery(payloads.entry(PAGE_A, messaging=[item], time=ENTRY_TIME))

    assert _one(in_seconds).occurred_at_ms == 1733313000000
    assert _one(in_ms).occurred_at_ms == ENTRY_TIME


def test_malformed_events_have_no_time() -> None:
    document = {"object": "instagram", "entry": [{"time": ENTRY_TIME, "messaging": [1]}]}

    (event,) = split_delivery(document).events

    assert event.kind == "malformed"
    assert event.occurred_at_ms is None


# --- parse_json ---------------------------------------------------------------------------------


def test_parse_json_reads_meta_escaped_bytes() -> None:
    assert parse_json(b'{"text":"Gr\\u00fc\\u00dfe a\\/b"}') == {"text": "Grüße a/b"}


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",
        b'{"text":"\xc3"}',
        b"",
        b"   ",
        b"not json",
        b'{"object":"instagram",',
        b"{'single': 'quotes'}",
        b'{"a":1}{"b":2}',
        b"1" * 5000,
    ],
    ids=repr,
)
def test_parse_json_refuses_bodies_that_are_not_utf8_json(body: bytes) -> None:
    with pytest.raises(PayloadNotJsonError):
        parse_json(body)


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000])
def test_parse_json_refuses_deeply_nested_json(body: bytes) -> None:
    with pytest.raises(PayloadNotJsonError):
        parse_json(body)


def test_every_body_parse_json_accepts_splits_without_raising_however_deep() -> None:
    # Near the interpreter's limit json.loads still succeeds while hashing the item a few
    # frames further down would not; such bodies must be refused, not crash the intake.
    split_count = 0
    for depth in range(1100):
        inner = b"[" * depth + b"]" * depth
        body = b'{"object":"instagram","entry":[{"id":"1","messaging":[{"x":' + inner + b"}]}]}"
        try:
            document = parse_json(body)
        except PayloadNotJsonError:
            continue
        (event,) = split_delivery(document).events
        assert event.kind == "other"
        split_count += 1
    assert split_count >= 90  # everything as deep as Meta could plausibly send is accepted


def test_parse_json_accepts_nesting_far_deeper_than_metas_payloads() -> None:
    depth = 90
    body = b'{"a":' * depth + b"1" + b"}" * depth

    document = parse_json(body)

    for _ in range(depth):
        document = document["a"]
    assert document == 1


def test_parse_json_accepts_a_bare_scalar() -> None:
    assert parse_json(b"12") == 12
    assert parse_json(b'"instagram"') == "instagram"


# --- properties ---------------------------------------------------------------------------------

MAX_EVENT_KEY = 300
KNOWN_KEYS = [
    "object",
    "entry",
    "id",
    "time",
    "messaging",
    "standby",
    "changes",
    "field",
    "value",
    "sender",
    "recipient",
    "from",
    "timestamp",
    "message",
    "mid",
    "is_echo",
    "is_deleted",
    "message_edit",
    "num_edit",
    "reaction",
    "action",
    "read",
    "postback",
    "referral",
    "optin",
    "comment_id",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**80), max_value=10**80)
    | st.floats()
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=80)
    | st.sampled_from(["", "0", "²", "m" * 300, "1733312999", "messages", "comments", "instagram"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(KNOWN_KEYS), children, max_size=4)
    ),
    max_leaves=20,
)


def _valid_envelopes() -> list[dict[str, object]]:
    comment = payloads.comment_change(comment_id="1790001", from_id=PATIENT, text="hi")
    items = [
        _message(),
        payloads.echo_item(page_id=PAGE_A, recipient=PATIENT, mid=OTHER_MID, text="ok"),
        payloads.read_item(sender=PATIENT, recipient=PAGE_A, mid=MID),
        payloads.reaction_item(sender=PATIENT, recipient=PAGE_A, mid=MID),
        payloads.edit_item(sender=PATIENT, recipient=PAGE_A, mid=MID, text="x"),
        payloads.deleted_item(sender=PATIENT, recipient=PAGE_A, mid=MID),
        payloads.postback_item(sender=PATIENT, recipient=PAGE_A, mid=MID, title="t", payload="p"),
    ]
    return [
        payloads.delivery(
            payloads.entry(PAGE_A, messaging=items, standby=[_message()], changes=[comment]),
            payloads.entry(PAGE_B, messaging=[_message(sender=OTHER_PATIENT, recipient=PAGE_B)]),
        ),
        payloads.dashboard_test_delivery(),
    ]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*path, index)))
    return found


def _node(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> Any:
    document: Any = copy.deepcopy(draw(st.sampled_from(_valid_envelopes())))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_paths(document)))
        replacement = draw(json_values)
        if not path:
            document = replacement
            continue
        parent = _node(document, path[:-1])
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.sampled_from(KNOWN_KEYS))] = replacement  # add or overwrite a member
        else:
            parent[path[-1]] = replacement
    return document


def _assert_well_formed(split: SplitDelivery) -> None:
    if not split.recognized:
        assert split.events == []
    for event in split.events:
        assert isinstance(event.event_key, str)
        assert 0 < len(event.event_key) <= MAX_EVENT_KEY
        event.event_key.encode("utf-8")
        assert HEX40.fullmatch(event.ordering_key)
        assert event.page_id is None or 0 < len(event.page_id) <= 64
        if event.page_id is not None:
            event.page_id.encode("utf-8")
        assert 0 < len(event.kind) <= 32
        assert event.occurred_at_ms is None or 0 <= event.occurred_at_ms < 10**14
        json.dumps(event.payload)


PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(json_values)
def test_any_json_value_splits_without_raising_into_well_formed_events(document: Any) -> None:
    _assert_well_formed(split_delivery(document))


@PROPERTY_SETTINGS
@given(json_values)
def test_any_json_value_wrapped_as_an_entry_or_item_splits_into_well_formed_events(
    value: Any,
) -> None:
    as_entry = split_delivery({"object": "instagram", "entry": [value]})
    assert as_entry.recognized
    _assert_well_formed(as_entry)
    for source in ("messaging", "standby", "changes"):
        split = split_delivery({"object": "instagram", "entry": [{"id": PAGE_A, source: [value]}]})
        assert split.recognized
        assert len(split.events) == 1  # one item, one event, whatever it holds
        _assert_well_formed(split)


@PROPERTY_SETTINGS
@given(mutated_envelopes())
def test_mutated_envelopes_split_without_raising_into_well_formed_events(document: Any) -> None:
    _assert_well_formed(split_delivery(document))


@PROPERTY_SETTINGS
@given(mutated_envelopes())
def test_splitting_is_deterministic(document: Any) -> None:
    first = split_delivery(document)
    again = split_delivery(copy.deepcopy(document))

    assert [(e.event_key, e.ordering_key, e.kind) for e in first.events] == [
        (e.event_key, e.ordering_key, e.kind) for e in again.events
    ]
