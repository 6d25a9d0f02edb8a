"""Specification of the automatic reply decision and of cutting replies to Meta's length limit."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from frontdesk.replies.responder import (
    DEFAULT_RULES,
    MESSAGING_WINDOW,
    TEXT_LIMIT,
    ReplyDecision,
    ReplyRules,
    decide_reply,
    mentions_emergency,
    split_text,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RULES = ReplyRules(
    enabled=True,
    greeting_text="Thanks for writing to the clinic.",
    cooldown=timedelta(hours=12),
    emergency_words=("emergency", "urgent", "chest pain", "can't breathe"),
    emergency_text="If this is an emergency, call your local emergency number.",
)


def _decide(
    rules: ReplyRules = RULES,
    *,
    text: str | None = "Hola, ¿tienen cita el jueves?",
    is_new_conversation: bool = False,
    last_auto_reply_at: datetime | None = None,
    message_age: timedelta = timedelta(seconds=5),
) -> ReplyDecision:
    return decide_reply(
        rules,
        text=text,
        is_new_conversation=is_new_conversation,
        last_auto_reply_at=last_auto_reply_at,
        message_time=NOW - message_age,
        now=NOW,
    )


# --- decide_reply ------------------------------------------------------------------------------


def test_disabled_rules_never_reply() -> None:
    disabled = replace(RULES, enabled=False)

    assert _decide(disabled, is_new_conversation=True) == ReplyDecision(None, "replies_disabled")
    assert _decide(disabled, text="emergency") == ReplyDecision(None, "replies_disabled")


def test_new_conversation_gets_the_greeting() -> None:
    assert _decide(is_new_conversation=True) == ReplyDecision(RULES.greeting_text, "greeting")


def test_conversation_never_auto_replied_to_gets_the_greeting() -> None:
    assert _decide(last_auto_reply_at=None) == ReplyDecision(RULES.greeting_text, "greeting")


def test_message_within_the_cooldown_gets_no_reply() -> None:
    decision = _decide(last_auto_reply_at=NOW - timedelta(hours=11, minutes=59))

    assert decision == ReplyDecision(None, "cooldown")


def test_message_after_the_cooldown_gets_the_greeting_again() -> None:
    for since in (timedelta(hours=12), timedelta(days=3)):
        decision = _decide(last_auto_reply_at=NOW - since)
        assert decision == ReplyDecision(RULES.greeting_text, "greeting_after_cooldown")


def test_emergency_word_overrides_the_cooldown() -> None:
    decision = _decide(
        text="It is URGENT, my son has a fever", last_auto_reply_at=NOW - timedelta(minutes=1)
    )

    assert decision == ReplyDecision(RULES.emergency_text, "emergency")


def test_emergency_message_in_a_new_conversation_gets_the_safety_text_not_the_greeting() -> None:
    decision = _decide(text="I have chest pain", is_new_conversation=True)

    assert decision == ReplyDecision(RULES.emergency_text, "emergency")


def test_emergency_words_without_a_safety_text_fall_back_to_the_usual_rules() -> None:
    rules = replace(RULES, emergency_text="")

    decision = _decide(rules, text="emergency", last_auto_reply_at=NOW - timedelta(minutes=1))

    assert decision == ReplyDecision(None, "cooldown")


def test_message_outside_the_24_hour_window_gets_no_reply() -> None:
    decision = _decide(is_new_conversation=True, message_age=timedelta(hours=25))

    assert decision == ReplyDecision(None, "outside_messaging_window")


def test_message_exactly_24_hours_old_counts_as_outside_the_window() -> None:
    assert timedelta(hours=24) == MESSAGING_WINDOW

    at_edge = _decide(is_new_conversation=True, message_age=timedelta(hours=24))
    just_inside = _decide(
        is_new_conversation=True, message_age=timedelta(hours=24) - timedelta(microseconds=1)
    )

    assert at_edge == ReplyDecision(None, "outside_messaging_window")
    assert just_inside == ReplyDecision(RULES.greeting_text, "greeting")


def test_emergency_outside_the_window_gets_no_reply() -> None:
    decision = _decide(text="emergency!", message_age=timedelta(days=2))

    assert decision == ReplyDecision(None, "outside_messaging_window")


def test_empty_greeting_means_no_reply() -> None:
    rules = replace(RULES, greeting_text="")

    assert _decide(rules, is_new_conversation=True) == ReplyDecision(None, "no_greeting_configured")


def test_empty_greeting_still_sends_the_emergency_text() -> None:
    rules = replace(RULES, greeting_text="")

    assert _decide(rules, text="urgent") == ReplyDecision(RULES.emergency_text, "emergency")


def test_message_without_text_gets_the_greeting_and_never_the_emergency_text() -> None:
    assert _decide(text=None, is_new_conversation=True) == ReplyDecision(
        RULES.greeting_text, "greeting"
    )
    assert _decide(text="", last_auto_reply_at=NOW) == ReplyDecision(None, "cooldown")


def test_default_rules_greet_a_new_conversation() -> None:
    decision = _decide(DEFAULT_RULES, is_new_conversation=True)

    assert decision == ReplyDecision(DEFAULT_RULES.greeting_text, "greeting")
    assert len(DEFAULT_RULES.greeting_text) <= TEXT_LIMIT
    assert len(DEFAULT_RULES.emergency_text) <= TEXT_LIMIT


# --- mentions_emergency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "emergency",
        "This is an EMERGENCY",
        "Urgent: need help",
        "es urgente?",
        "I have Chest Pain since noon",
        "i can't breathe well",
        "(urgent)",
        "urgent!!!",
    ],
)
def test_emergency_words_are_found_whatever_their_case(text: str) -> None:
    words = (*RULES.emergency_words, "urgente")

    assert mentions_emergency(text, words)


@pytest.mark.parametrize(
    "text",
    [
        "I need this urgently",  # a longer word is not the configured word
        "nonurgent question about billing",
        "chest painting class",
        "my chest hurts, no pain elsewhere",  # the words of a phrase must be adjacent
        "chestpain",
        "",
    ],
)
def test_emergency_words_only_match_as_whole_words(text: str) -> None:
    assert not mentions_emergency(text, RULES.emergency_words)


def test_empty_emergency_word_matches_nothing() -> None:
    assert not mentions_emergency("anything at all", ("",))
    assert not mentions_emergency("anything at all", ())


def test_emergency_word_with_regex_characters_is_matched_literally() -> None:
    assert mentions_emergency("help a.s.a.p please", ("a.s.a.p",))
    assert not mentions_emergency("help axsxaxp please", ("a.s.a.p",))


def test_default_emergency_words_cover_spanish() -> None:
    assert mentions_emergency("¡Es una emergencia!", DEFAULT_RULES.emergency_words)


# --- split_text --------------------------------------------------------------------------------


def test_text_within_the_limit_is_one_unchanged_part() -> None:
    assert split_text("Hola") == ["Hola"]
    exactly = "a" * TEXT_LIMIT
    assert split_text(exactly) == [exactly]


def test_long_text_is_cut_at_spaces_into_parts_within_the_limit() -> None:
    words = [f"word{index}" + "x" * (index % 7) for index in range(600)]
    text = " ".join(words)
    assert len(text) > 3 * TEXT_LIMIT

    parts = split_text(text)

    assert len(parts) >= 4
    assert all(0 < len(part) <= TEXT_LIMIT for part in parts)
    assert " ".join(parts) == text
    assert all(part == part.strip() for part in parts)
    assert [word for part in parts for word in part.split(" ")] == words


def test_cut_at_spaces_keeps_words_whole_even_with_repeated_spaces() -> None:
    text = ("lorem   ipsum " * 200).strip()

    parts = split_text(text)

    assert all(len(part) <= TEXT_LIMIT for part in parts)
    assert " ".join(parts).split() == text.split()


def test_word_longer_than_the_limit_is_cut_hard() -> None:
    word = "".join(chr(ord("a") + index % 26) for index in range(2500))

    parts = split_text(word)

    assert [len(part) for part in parts] == [1000, 1000, 500]
    assert "".join(parts) == word


def test_a_long_word_after_short_ones_is_cut_hard_where_needed() -> None:
    text = "hello " + "z" * 1500

    parts = split_text(text)

    assert parts == ["hello", "z" * 1000, "z" * 500]


def test_custom_limit_is_respected() -> None:
    assert split_text("aa bb cc", limit=5) == ["aa bb", "cc"]


@pytest.mark.parametrize("text", ["", " ", "   \n\t  "])
def test_empty_or_whitespace_text_gives_no_parts(text: str) -> None:
    assert split_text(text) == []


def test_surrounding_whitespace_is_dropped() -> None:
    assert split_text("  Hola  ") == ["Hola"]
