"""The ambient context of one call: it follows a request through in-process calls, HTTP calls
and events, so logs and idempotency keys stay attached without being threaded by hand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from colony.platform.ids import new_id


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    """A caller's Idempotency-Key, scoped to the caller, and the fingerprint of its request."""

    key: str
    fingerprint: str


CORRELATION_HEADER = "x-correlation-id"
"""The header a correlation id travels in: on a request (a caller's, kept), on every answer,
and on calls between services."""

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_idempotency: ContextVar[IdempotencyRequest | None] = ContextVar("idempotency", default=None)


def correlation_id() -> str | None:
    return _correlation_id.get()


def idempotency_request() -> IdempotencyRequest | None:
    return _idempotency.get()


@contextlib.contextmanager
def call_context(
    correlation: str | None = None, idempotency: IdempotencyRequest | None = None
) -> Iterator[str]:
    """Enter the context of one request (a new correlation id unless one is handed in). Log
    lines read the correlation id from here (see :mod:`colony.platform.logging`), rather
    than binding it in structlog's context on every call, which cost more than the rest."""
    cid = correlation or new_id()
    token_c = _correlation_id.set(cid)
    token_i = _idempotency.set(idempotency)
    try:
        yield cid
    finally:
        _idempotency.reset(token_i)
        _correlation_id.reset(token_c)


@contextlib.contextmanager
def without_idempotency() -> Iterator[None]:
    """Calls made while serving an idempotent request must not reuse its key for other writes."""
    token = _idempotency.set(None)
    try:
        yield
    finally:
        _idempotency.reset(token)
