"""Specification of how Graph API error replies are classified for the worker."""

import pytest

from frontdesk.errors import PermanentError, TransientError
from frontdesk.graph.errors import (
    GraphPermanentError,
    GraphTransientError,
    TokenRejectedError,
    classify_error,
    parse_retry_after,
)


def _body(code: int, subcode: int | None = None) -> dict[str, object]:
    error: dict[str, object] = {"message": "x", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def test_code_190_is_a_rejected_token_and_permanent() -> None:
    error = classify_error(400, _body(190, 463), None)

    assert isinstance(error, TokenRejectedError)
    assert isinstance(error, GraphPermanentError)
    assert isinstance(error, PermanentError)
    assert error.reason == "token_rejected"
    assert error.code == 190


def test_code_190_is_a_rejected_token_even_with_a_server_error_status() -> None:
    assert isinstance(classify_error(500, _body(190), None), TokenRejectedError)


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002])
def test_rate_limit_codes_are_transient_and_carry_retry_after(code: int) -> None:
    error = classify_error(400, _body(code), 30.0)

    assert isinstance(error, GraphTransientError)
    assert isinstance(error, TransientError)
    assert error.retry_after == 30.0
    assert error.reason == f"rate_limited:{code}"


def test_http_429_is_transient_and_carries_retry_after() -> None:
    error = classify_error(429, {}, 7.0)

    assert isinstance(error, GraphTransientError)
    assert error.retry_after == 7.0
    assert error.reason == "rate_limited:429"


def test_rate_limit_without_retry_after_leaves_it_unset() -> None:
    error = classify_error(400, _body(4), None)

    assert isinstance(error, GraphTransientError)
    assert error.retry_after is None


@pytest.mark.parametrize("code", [1, 2, 1200])
def test_temporary_meta_failures_are_transient(code: int) -> None:
    error = classify_error(400, _body(code), None)

    assert isinstance(error, GraphTransientError)
    assert error.reason == f"graph_unavailable:{code}"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_any_server_error_status_is_transient(status: int) -> None:
    for body in (_body(100), {}, None):
        error = classify_error(status, body, 3.0)
        assert isinstance(error, GraphTransientError), (status, body)
        assert error.retry_after == 3.0


@pytest.mark.parametrize("subcode", [2018278, 2534022])
def test_outside_the_messaging_window_is_permanent(subcode: int) -> None:
    error = classify_error(400, _body(10, subcode), None)

    assert isinstance(error, GraphPermanentError)
    assert not isinstance(error, TokenRejectedError)
    assert error.reason == "outside_messaging_window"
    assert error.code == 10


def test_code_551_is_recipient_unavailable() -> None:
    error = classify_error(400, _body(551, 1545041), None)

    assert isinstance(error, GraphPermanentError)
    assert error.reason == "recipient_unavailable"


@pytest.mark.parametrize("code", [10, 200, 230])
def test_permission_codes_are_permanent(code: int) -> None:
    error = classify_error(403, _body(code), None)

    assert isinstance(error, GraphPermanentError)
    assert error.reason == f"permission_denied:{code}"


def test_code_200_is_a_permission_error() -> None:
    assert classify_error(400, _body(200), None).args == ("permission_denied:200",)


def test_unknown_client_error_is_permanent() -> None:
    error = classify_error(400, _body(100), None)

    assert isinstance(error, GraphPermanentError)
    assert error.reason == "graph_rejected:100"
    assert error.code == 100


@pytest.mark.parametrize("body", [None, "upstream error", ["error"], 42, {"error": "text"}])
def test_body_without_an_error_object_is_classified_by_status_only(body: object) -> None:
    client_error = classify_error(400, body, None)
    server_error = classify_error(503, body, None)
    throttled = classify_error(429, body, 1.0)

    assert isinstance(client_error, GraphPermanentError)
    assert client_error.reason == "graph_rejected:400"
    assert client_error.code is None
    assert isinstance(server_error, GraphTransientError)
    assert server_error.reason == "graph_unavailable:503"
    assert isinstance(throttled, GraphTransientError)
    assert throttled.retry_after == 1.0


def test_codes_that_are_not_integers_are_ignored() -> None:
    assert isinstance(classify_error(400, {"error": {"code": "190"}}, None), GraphPermanentError)
    assert not isinstance(classify_error(400, {"error": {"code": "190"}}, None), TokenRejectedError)
    assert not isinstance(classify_error(400, {"error": {"code": True}}, None), GraphTransientError)


def test_reason_never_carries_metas_error_message() -> None:
    body = {"error": {"message": "The user Maria Lopez cannot be messaged", "code": 551}}

    assert "Maria" not in str(classify_error(400, body, None))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0", 0.0), ("2.5", 2.5), (" 10 ", 10.0)],
)
def test_retry_after_in_seconds_is_read(header: str, expected: float) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    "header",
    [None, "", "abc", "-1", "nan", "inf", "Infinity", "1e400", "Wed, 21 Oct 2026 07:28:00 GMT"],
)
def test_retry_after_that_is_not_a_usable_delay_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header) is None
