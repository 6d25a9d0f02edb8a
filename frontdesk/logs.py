"""Structured logging with a correlation id, redacting anything that could be PHI or a secret."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import stamina.instrumentation
import structlog

from frontdesk.privacy import SENSITIVE_KEYS

REDACTED = "[redacted]"


QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "uvicorn.access", "aiosqlite")


def redact(value: Any) -> Any:
    """Replace the values of sensitive keys, at any depth, with a marker."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() in SENSITIVE_KEYS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key == "event":
            continue
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact(event_dict[key])
    return event_dict


def _template_of_foreign_records(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A stdlib record's message has its arguments filled in, and they can be anything (asyncio
    puts exception reprs there); keep the format string instead."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord) and record.args:
        event_dict["event"] = str(record.msg)
    return event_dict


def _drop_exception_text(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Exception messages can quote data; keep only the class name of what was raised."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        error = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(error, tuple):
            error = error[1]
        if isinstance(error, BaseException):
            event_dict["error_class"] = type(error).__name__
    event_dict.pop("exception", None)
    return event_dict


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """JSON lines when not on a terminal, readable lines on one; stdlib logs go the same way."""
    render_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _template_of_foreign_records,
        _drop_exception_text,
        _redact_event,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if render_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    install_retry_logging()


def install_retry_logging() -> None:
    """Replace stamina's retry hooks, process-wide, with one that logs no arguments."""
    stamina.instrumentation.set_on_retry_hooks([log_retry_without_arguments])


def log_retry_without_arguments(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's own hooks log the retried call's arguments and the exception's repr, which can
    be a patient's id or a whole webhook body; this one keeps the name, the count and the wait."""
    get_logger("stamina").warning(
        "retry_scheduled",
        callable=details.name,
        retry_num=details.retry_num,
        wait_for=round(details.wait_for, 2),
        error_class=type(details.caused_by).__name__,
    )


def log_loop_exception(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own handler prints exception reprs; this keeps only what is safe."""
    error = context.get("exception")
    get_logger("asyncio").error(
        "event_loop_error",
        error_class=type(error).__name__ if error else None,
        detail=str(context.get("message", ""))[:80],
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def bind_correlation_id(correlation_id: str) -> None:
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()
