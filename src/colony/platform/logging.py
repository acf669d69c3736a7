"""Structured logs: JSON lines when not on a terminal, readable columns when on one.

Every line carries the correlation id of the request it belongs to (set by
:func:`colony.platform.context.call_context`), the service that wrote it, and the trace and
span it was written in.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from colony.platform import context
from colony.platform.observability import tracing


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_correlation_id,
            _add_trace,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _add_correlation_id(
    logger: Any, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    correlation = context.correlation_id()
    if correlation is not None:
        event.setdefault("correlation_id", correlation)
    return event


def _add_trace(
    logger: Any, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The trace and span a line was written in (a line found from a trace, and a trace
    from a line), and the line itself added to its span, if that span is recorded."""
    ids = tracing.current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
        tracing.log_event(method, str(event.get("event", "")))
    return event


def get_logger(name: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    # Initial values, not .bind(): binding would fix the configuration at import time.
    return structlog.get_logger(component=name, **bound)  # type: ignore[no-any-return]
