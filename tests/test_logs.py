"""Specification of structured logging: JSON lines with sensitive values redacted."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import stamina

from frontdesk.logs import (
    REDACTED,
    bind_correlation_id,
    clear_context,
    configure_logging,
    get_logger,
    redact,
)
from tests.conftest import log_into_the_suite


@pytest.fixture(autouse=True)
def back_to_the_suite_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; the other tests log into the suite's file."""
    yield
    clear_context()
    log_into_the_suite()


@pytest.fixture
def stream() -> io.StringIO:
    output = io.StringIO()
    configure_logging(json=True, stream=output)
    return output


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_sensitive_values_are_redacted_and_counts_are_kept(stream: io.StringIO) -> None:
    get_logger("x").info(
        "evt", text="secret text", access_token="tok", nested={"sender_id": "123"}, count=3
    )

    (line,) = _lines(stream)
    assert line["event"] == "evt"
    assert line["text"] == REDACTED
    assert line["access_token"] == REDACTED
    assert line["nested"] == {"sender_id": REDACTED}
    assert line["count"] == 3
    assert line["level"] == "info"
    assert line["logger"] == "x"
    output = stream.getvalue()
    assert "secret text" not in output
    assert '"tok"' not in output
    assert "123" not in output


def test_sensitive_keys_are_redacted_inside_lists_and_whatever_their_case(
    stream: io.StringIO,
) -> None:
    get_logger("x").info(
        "evt", sends=[{"recipient_id": "7321554890123456", "ok": True}], Authorization="Bearer t"
    )

    (line,) = _lines(stream)
    assert line["sends"] == [{"recipient_id": REDACTED, "ok": True}]
    assert line["Authorization"] == REDACTED
    assert "7321554890123456" not in stream.getvalue()


def test_exception_message_is_never_written_but_its_class_is(stream: io.StringIO) -> None:
    log = get_logger("x")
    try:
        raise ValueError("patient said X")
    except ValueError:
        log.exception("handler_failed", event_id=7)

    output = stream.getvalue()
    assert "patient said X" not in output
    assert "Traceback" not in output
    (line,) = _lines(stream)
    assert line["error_class"] == "ValueError"
    assert line["event_id"] == 7
    assert line["level"] == "error"


def test_exception_passed_as_exc_info_is_reduced_to_its_class(stream: io.StringIO) -> None:
    error = KeyError("maria@example.com")

    get_logger("x").warning("lookup_failed", exc_info=error)

    assert "maria@example.com" not in stream.getvalue()
    assert _lines(stream)[0]["error_class"] == "KeyError"


def test_stdlib_exception_message_is_never_written(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("token IGAA-secret")
    except RuntimeError:
        logging.getLogger("some.library").exception("library failed")

    assert "IGAA-secret" not in stream.getvalue()
    (line,) = _lines(stream)
    assert line["event"] == "library failed"
    assert line["error_class"] == "RuntimeError"


def test_http_client_info_logs_are_suppressed(stream: io.StringIO) -> None:
    logging.getLogger("httpx2").info("HTTP Request: POST https://graph.example/?access_token=t")
    logging.getLogger("httpcore").debug("send_request_headers")

    assert stream.getvalue() == ""
    assert logging.getLogger("httpx2").level == logging.WARNING


def test_http_client_warnings_still_get_through(stream: io.StringIO) -> None:
    logging.getLogger("httpx2").warning("connection pool full")

    (line,) = _lines(stream)
    assert line["event"] == "connection pool full"
    assert line["level"] == "warning"


def test_uvicorn_access_log_is_disabled(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").warning('1.2.3.4 - "GET /?code=abc" 200')

    assert stream.getvalue() == ""


def test_correlation_id_is_added_to_every_line(stream: io.StringIO) -> None:
    bind_correlation_id("req-1")
    get_logger("x").info("first")
    clear_context()
    get_logger("x").info("second")

    first, second = _lines(stream)
    assert first["correlation_id"] == "req-1"
    assert "correlation_id" not in second


def test_level_setting_filters_lower_levels() -> None:
    output = io.StringIO()
    configure_logging("WARNING", json=True, stream=output)

    get_logger("x").info("hidden")
    get_logger("x").warning("shown")

    assert [line["event"] for line in _lines(output)] == ["shown"]


def test_readable_renderer_redacts_too() -> None:
    output = io.StringIO()
    configure_logging(json=False, stream=output)

    get_logger("x").info("evt", text="secret text", count=3)

    assert "secret text" not in output.getvalue()
    assert REDACTED in output.getvalue()
    assert "evt" in output.getvalue()


def test_redact_replaces_sensitive_values_at_any_depth() -> None:
    value = {"a": [{"b": {"token": "t", "n": 1}}], "payload": {"x": 1}, "keep": ("code", 2)}

    assert redact(value) == {
        "a": [{"b": {"token": REDACTED, "n": 1}}],
        "payload": REDACTED,
        "keep": ["code", 2],
    }


def test_a_retried_call_is_logged_without_its_arguments_or_the_error_text(
    stream: io.StringIO,
) -> None:
    failures = iter([ConnectionError("patient 7150000000000001 said hello")])

    @stamina.retry(on=ConnectionError, attempts=2, wait_initial=0.0, wait_jitter=0.0)
    def record_sent(recipient_id: str, *, text: str) -> None:
        error = next(failures, None)
        if error:
            raise error

    record_sent("7150000000000001", text="my private symptoms")

    [line] = [line for line in _lines(stream) if line["event"] == "retry_scheduled"]
    assert line["callable"].endswith("record_sent")
    assert line["retry_num"] == 1
    assert line["error_class"] == "ConnectionError"
    assert "7150000000000001" not in stream.getvalue()
    assert "private symptoms" not in stream.getvalue()
