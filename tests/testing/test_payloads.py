"""Specification of the webhook payload builders and Meta-style encoding."""

import json

from frontdesk.testing import payloads

PAGE_ID = "17841455512340001"
PATIENT_ID = "7321554890123456"
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDU1NTEyMzQwMDAxOjAwMDEw"


def test_encode_escapes_non_ascii_as_unicode_escapes() -> None:
    encoded = payloads.encode({"text": "äöå ❤️"})

    assert encoded == b'{"text":"\\u00e4\\u00f6\\u00e5 \\u2764\\ufe0f"}'


def test_encode_escapes_every_forward_slash() -> None:
    encoded = payloads.encode({"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/"})

    assert encoded == b'{"url":"https:\\/\\/lookaside.fbsbx.com\\/ig_messaging_cdn\\/"}'


def test_encode_uses_compact_separators() -> None:
    assert payloads.encode({"a": [1, 2], "b": {"c": None}}) == b'{"a":[1,2],"b":{"c":null}}'


def test_encoded_payload_round_trips_through_json_loads() -> None:
    payload = payloads.delivery(
        payloads.entry(
            PAGE_ID,
            messaging=[
                payloads.message_item(
                    sender=PATIENT_ID,
                    recipient=PAGE_ID,
                    mid=MID,
                    text='¿Cita el jueves? 50% off a\\/b "quoted"',
                    attachments=[payloads.attachment("image", "https://cdn.example/a?x=1&y=/2")],
                )
            ],
        )
    )

    assert json.loads(payloads.encode(payload)) == payload


def test_dm_delivery_is_one_inbound_text_message_to_the_page() -> None:
    body = payloads.dm_delivery(
        page_id=PAGE_ID, sender=PATIENT_ID, text="Hola", mid=MID, timestamp=1733312999312
    )

    assert body == {
        "object": "instagram",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1733312999312,
                "messaging": [
                    {
                        "sender": {"id": PATIENT_ID},
                        "recipient": {"id": PAGE_ID},
                        "timestamp": 1733312999312,
                        "message": {"mid": MID, "text": "Hola"},
                    }
                ],
            }
        ],
    }


def test_dm_delivery_mints_a_distinct_mid_on_every_call() -> None:
    first = payloads.dm_delivery(page_id=PAGE_ID, sender=PATIENT_ID, text="Hola")
    second = payloads.dm_delivery(page_id=PAGE_ID, sender=PATIENT_ID, text="Hola")

    assert _only_message(first)["mid"] != _only_message(second)["mid"]


def test_dm_delivery_without_timestamp_is_stamped_with_current_epoch_milliseconds() -> None:
    body = payloads.dm_delivery(page_id=PAGE_ID, sender=PATIENT_ID, text="Hola")

    timestamp = _only_item(body)["timestamp"]
    assert isinstance(timestamp, int)
    assert timestamp > 1_700_000_000_000


def test_message_item_with_only_a_mid_omits_every_optional_member() -> None:
    item = payloads.message_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID)

    assert item == {
        "sender": {"id": PATIENT_ID},
        "recipient": {"id": PAGE_ID},
        "timestamp": payloads.DEFAULT_TIMESTAMP,
        "message": {"mid": MID},
    }


def test_message_item_carries_attachments_echo_flag_and_reply_to_when_given() -> None:
    image = payloads.attachment("image", "https://cdn.example/i.jpg")

    item = payloads.message_item(
        sender=PATIENT_ID,
        recipient=PAGE_ID,
        mid=MID,
        text="see photo",
        timestamp=42,
        attachments=[image],
        is_echo=True,
        reply_to_mid="m_earlier",
    )

    assert item["timestamp"] == 42
    assert item["message"] == {
        "mid": MID,
        "text": "see photo",
        "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/i.jpg"}}],
        "is_echo": True,
        "reply_to": {"mid": "m_earlier"},
    }


def test_echo_item_is_sent_by_the_page_to_the_patient_and_flagged_as_echo() -> None:
    item = payloads.echo_item(page_id=PAGE_ID, recipient=PATIENT_ID, mid=MID, text="Hi!")

    assert item["sender"] == {"id": PAGE_ID}
    assert item["recipient"] == {"id": PATIENT_ID}
    assert item["message"] == {"mid": MID, "text": "Hi!", "is_echo": True}


def test_read_item_carries_the_read_mid() -> None:
    item = payloads.read_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID, timestamp=7)

    assert item == {
        "sender": {"id": PATIENT_ID},
        "recipient": {"id": PAGE_ID},
        "timestamp": 7,
        "read": {"mid": MID},
    }


def test_reaction_item_defaults_to_a_love_reaction() -> None:
    item = payloads.reaction_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID)

    assert item["reaction"] == {"mid": MID, "action": "react", "reaction": "love", "emoji": "❤️"}


def test_unreact_item_carries_neither_reaction_nor_emoji() -> None:
    item = payloads.reaction_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID, action="unreact")

    assert item["reaction"] == {"mid": MID, "action": "unreact"}


def test_edit_item_carries_new_text_and_edit_count() -> None:
    item = payloads.edit_item(
        sender=PATIENT_ID, recipient=PAGE_ID, mid=MID, text="Monday?", num_edit=2
    )

    assert item["message_edit"] == {"mid": MID, "text": "Monday?", "num_edit": 2}


def test_deleted_item_marks_the_message_deleted() -> None:
    item = payloads.deleted_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID)

    assert item["message"] == {"mid": MID, "is_deleted": True}


def test_postback_item_carries_mid_title_and_payload() -> None:
    item = payloads.postback_item(
        sender=PATIENT_ID, recipient=PAGE_ID, mid=MID, title="Hours?", payload="FAQ_HOURS"
    )

    assert item["postback"] == {"mid": MID, "title": "Hours?", "payload": "FAQ_HOURS"}


def test_comment_change_uses_the_instagram_login_comments_shape() -> None:
    change = payloads.comment_change(comment_id="17900000000000401", from_id=PATIENT_ID, text="$?")

    assert change == {
        "field": "comments",
        "value": {
            "id": "17900000000000401",
            "from": {"id": PATIENT_ID, "username": "patient.user"},
            "text": "$?",
            "media": {"id": "18000000000000400", "media_product_type": "FEED"},
        },
    }


def test_entry_omits_the_lists_that_are_not_given() -> None:
    assert payloads.entry(PAGE_ID, time=5) == {"id": PAGE_ID, "time": 5}


def test_entry_carries_messaging_standby_and_changes_when_given() -> None:
    item = payloads.read_item(sender=PATIENT_ID, recipient=PAGE_ID, mid=MID)
    change = payloads.comment_change(comment_id="1", from_id=PATIENT_ID, text="hi")

    built = payloads.entry(PAGE_ID, messaging=[item], standby=[item], changes=[change])

    assert built == {
        "id": PAGE_ID,
        "time": payloads.DEFAULT_ENTRY_TIME,
        "messaging": [item],
        "standby": [item],
        "changes": [change],
    }


def test_delivery_wraps_entries_in_the_instagram_envelope_in_order() -> None:
    first, second = payloads.entry("1"), payloads.entry("2")

    assert payloads.delivery(first, second) == {"object": "instagram", "entry": [first, second]}


def test_dashboard_test_delivery_has_entry_id_zero_and_a_string_timestamp() -> None:
    body = payloads.dashboard_test_delivery()

    assert body == {
        "object": "instagram",
        "entry": [
            {
                "id": "0",
                "time": 1733315601000,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "sender": {"id": "12334"},
                            "recipient": {"id": "23245"},
                            "timestamp": "1527459824",
                            "message": {"mid": "random_mid", "text": "random_text"},
                        },
                    }
                ],
            }
        ],
    }


def _only_item(body: payloads.JSON) -> payloads.JSON:
    (entry,) = _as_list(body["entry"])
    (item,) = _as_list(_as_json(entry)["messaging"])
    return _as_json(item)


def _only_message(body: payloads.JSON) -> payloads.JSON:
    return _as_json(_only_item(body)["message"])


def _as_list(value: object) -> list[object]:
    assert isinstance(value, list)
    return value


def _as_json(value: object) -> payloads.JSON:
    assert isinstance(value, dict)
    return value
