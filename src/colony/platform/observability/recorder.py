"""Colony's spans, recorded: OpenTelemetry's API, without the SDK's span on the hot path.

A span Colony opens is a :class:`RecordedSpan`, an ``opentelemetry.trace.Span`` like any
other (the API's context holds it, ``trace.get_current_span()`` returns it, a library
instrumented through the API opens its spans under it). It is recorded here rather than by
the SDK's span because of what that one costs at Colony's rate, about forty spans per sampled
checkout: 17 µs to open and close (each attribute validated under a lock, a dozen objects
built), and then, while the console's store keeps thousands of such spans, a share of every
garbage collection. This one costs a few µs and, ended, becomes one
:class:`~colony.platform.observability.trace_store.StoredSpan` that the collector never
scans, which is what the store keeps and what is shipped to the gateway.

The SDK still does the rest: spans that other libraries open through the API go through its
provider to the same places (:class:`SdkSpans`), and when the standard variables name an
OTLP collector, each finished span is converted (:func:`to_readable`) and handed to the SDK's
batch exporter, which sends it from its own thread.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation import _SPAN_KEY

from colony.platform.observability.trace_store import SpanEvent, SpanLink, StoredSpan

SERVICE = "colony.service"
"""The attribute naming whose code a span timed (kept apart, as ``StoredSpan.service``)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
    SpanKind.INTERNAL: "internal",
}
_KIND_NAMES = {id(kind): name for kind, name in _KINDS.items()}
"""By the member's identity: an enum member's hash is a call of Python's, once per span."""
_STATUSES = {StatusCode.ERROR: "error", StatusCode.OK: "ok"}
_PLAIN = frozenset({str, int, float, bool})


class Finished:
    """Finished sampled spans until the next flush, at most ``bound`` (past it the oldest are
    dropped: a process whose shipper stalls does not grow without end). A deque's appends
    and pops are atomic, so the SDK's threads and the loop may share it."""

    def __init__(self, bound: int = 20_000) -> None:
        self.spans: deque[StoredSpan] = deque(maxlen=bound)
        self.process = ""
        """This process's name (and instance), as every span it records names it."""
        self.exporter: SpanProcessor | None = None
        """The SDK's OTLP batch processor, when one is configured."""

    def take(self) -> list[StoredSpan]:
        taken = []
        while self.spans:
            taken.append(self.spans.popleft())
        return taken


FINISHED = Finished()

RECORDING: ContextVar[RecordedSpan | None] = ContextVar("colony_recording_span", default=None)
"""The innermost of Colony's spans that is open here, if any: asked before opening a span
below it, a tenth of what asking OpenTelemetry's context for the current span costs."""


def _api_context_variable() -> ContextVar[Context] | None:
    """The context variable behind OpenTelemetry's API, when its runtime context is the
    standard one (unless ``OTEL_PYTHON_CONTEXT`` names another). A span is made current, and
    the current span read, through it directly: the API's way passes four layers of calls
    each time (attach, set_span_in_context, set_value, get_current), a dozen calls for every
    sampled span. Where it is not there, the API's way it is."""
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return variable if isinstance(variable, ContextVar) else None


_API_CONTEXT = _api_context_variable()


def current_span() -> trace.Span:
    """The API's current span: Colony's, or one a library opened below it."""
    if _API_CONTEXT is None:
        return trace.get_current_span()
    span = _API_CONTEXT.get().get(_SPAN_KEY)
    if type(span) is RecordedSpan or isinstance(span, trace.Span):  # ours, asked first: cheaper
        return span
    return INVALID_SPAN


class RecordedSpan(trace.Span):
    """A sampled span while it runs, current inside its ``with`` block."""

    __slots__ = (
        "_context",
        "_parent_id",
        "_recording_token",
        "_token",
        "attributes",
        "events",
        "kind",
        "links",
        "message",
        "name",
        "service",
        "span_id",
        "start_ns",
        "status",
        "trace_hex",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        service: str,
        attributes: dict[str, Any],
        trace_id: int,
        parent_id: int | None,
        links: Sequence[Link] = (),
        start_ns: int | None = None,
        span_id: int | None = None,
        trace_hex: str | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id or random.getrandbits(64)
        # Formatted once per trace and shared by its spans (the store keeps one string).
        self.trace_hex = trace_hex or f"{trace_id:032x}"
        self._context: SpanContext | None = None
        self._parent_id = parent_id
        self.name = name
        self.kind = kind
        self.service = service
        self.attributes = attributes
        self.events: list[SpanEvent] | None = None
        self.links = links
        self.status = "unset"
        self.message = ""
        self.start_ns = time.time_ns() if start_ns is None else start_ns

    # --- as a context manager: current while the block runs ---------------------------------

    def __enter__(self) -> RecordedSpan:
        if _API_CONTEXT is None:
            self._token = otel_context.attach(trace.set_span_in_context(self))
        else:  # what set_span_in_context and attach do, without their calls
            self._token = _API_CONTEXT.set(Context({**_API_CONTEXT.get(), _SPAN_KEY: self}))
        self._recording_token = RECORDING.set(self)
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, Exception):
            self.record_exception(exc)
        RECORDING.reset(self._recording_token)
        if _API_CONTEXT is None:
            otel_context.detach(self._token)
        else:
            _API_CONTEXT.reset(self._token)
        self.end()

    # --- the API -----------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        if self._context is None:  # made when asked: most spans are never asked
            self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)
        return self._context

    def is_recording(self) -> bool:
        return self.start_ns >= 0

    def set_attribute(self, key: str, value: Any) -> None:
        if self.start_ns >= 0:  # once ended, its attributes are the stored span's
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self.start_ns >= 0:
            self.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        event = SpanEvent(
            name=name,
            time_unix_nano=timestamp or time.time_ns(),
            attributes={key: _plain(value) for key, value in (attributes or {}).items()},
        )
        if self.events is None:
            self.events = [event]
        else:
            self.events.append(event)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        self.links = (*self.links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        self.status = _STATUSES.get(code, "unset")
        self.message = description or ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # The type and message as OpenTelemetry's exception event has them, without
        # formatting a traceback (the logs have it where it matters).
        message = str(exception)[:500]
        self.add_event(
            "exception",
            {"exception.type": type(exception).__name__, "exception.message": message},
            timestamp,
        )
        self.set_status(StatusCode.ERROR, f"{type(exception).__name__}: {message}"[:500])

    def end(self, end_time: int | None = None) -> None:
        if self.start_ns < 0:
            return
        start, self.start_ns = self.start_ns, -1
        attributes = self.attributes
        for key, value in attributes.items():
            if type(value) not in _PLAIN:  # a sequence: rare, never on the hot path
                attributes[key] = _plain(value)
        stored = StoredSpan(
            trace_id=self.trace_hex,
            span_id=f"{self.span_id:016x}",
            parent_span_id=None if self._parent_id is None else f"{self._parent_id:016x}",
            name=self.name,
            kind=_KIND_NAMES.get(id(self.kind), "internal"),
            service=self.service,
            process=FINISHED.process,
            start_unix_nano=start,
            end_unix_nano=end_time or time.time_ns(),
            status=self.status,
            status_message=self.message,
            attributes=attributes,
            events=tuple(self.events) if self.events else (),
            links=tuple(
                SpanLink(
                    trace_id=f"{link.context.trace_id:032x}",
                    span_id=f"{link.context.span_id:016x}",
                )
                for link in self.links
            )
            if self.links
            else (),
        )
        FINISHED.spans.append(stored)
        if FINISHED.exporter is not None:
            FINISHED.exporter.on_end(to_readable(stored, _resource))


# --- the SDK, for what it still does ----------------------------------------------------------


class SdkSpans(SpanProcessor):
    """Spans that other libraries open through the API, recorded by the SDK: into the same
    collector, as Colony's own are."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            FINISHED.spans.append(stored(span))


_resource = Resource.get_empty()
_SCOPE = InstrumentationScope("colony")


def use_resource(resource: Resource) -> None:
    """The resource (process and instance) every exported span names."""
    global _resource
    _resource = resource


def stored(span: ReadableSpan) -> StoredSpan:
    """A span the SDK recorded, as the store keeps it and the console shows it."""
    context = span.context
    assert context is not None
    attributes: dict[str, Any] = {
        key: _plain(value) for key, value in (span.attributes or {}).items()
    }
    service = str(attributes.pop(SERVICE, "") or FINISHED.process.split("/")[0])
    parent = span.parent
    return StoredSpan(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent else None,
        name=span.name,
        kind=_KINDS.get(span.kind, "internal"),
        service=service,
        process=FINISHED.process,
        start_unix_nano=span.start_time or 0,
        end_unix_nano=span.end_time or span.start_time or 0,
        status=_STATUSES.get(span.status.status_code, "unset"),
        status_message=span.status.description or "",
        attributes=attributes,
        events=tuple(
            SpanEvent(
                name=event.name,
                time_unix_nano=event.timestamp,
                attributes={k: _plain(v) for k, v in (event.attributes or {}).items()},
            )
            for event in span.events
        ),
        links=tuple(
            SpanLink(
                trace_id=f"{link.context.trace_id:032x}", span_id=f"{link.context.span_id:016x}"
            )
            for link in span.links
        ),
    )


_KIND_OF = {name: kind for kind, name in _KINDS.items()}
_STATUS_OF = {"ok": StatusCode.OK}


def to_readable(span: StoredSpan, resource: Resource | None = None) -> ReadableSpan:
    """A stored span as the SDK's exporters take it (``colony.service`` back among its
    attributes)."""
    trace_id = int(span.trace_id, 16)
    parent = (
        SpanContext(trace_id, int(span.parent_span_id, 16), False, _SAMPLED)
        if span.parent_span_id
        else None
    )
    return ReadableSpan(
        name=span.name,
        context=SpanContext(trace_id, int(span.span_id, 16), False, _SAMPLED),
        parent=parent,
        resource=resource or _resource,
        attributes={SERVICE: span.service, **span.attributes},
        events=[Event(e.name, dict(e.attributes), e.time_unix_nano) for e in span.events],
        links=[
            Link(SpanContext(int(link.trace_id, 16), int(link.span_id, 16), True, _SAMPLED))
            for link in span.links
        ],
        kind=_KIND_OF.get(span.kind, SpanKind.INTERNAL),
        status=Status(StatusCode.ERROR, span.status_message or None)
        if span.status == "error"
        else Status(_STATUS_OF.get(span.status, StatusCode.UNSET)),
        start_time=span.start_unix_nano,
        end_time=span.end_unix_nano,
        instrumentation_scope=_SCOPE,
    )


def _plain(value: Any) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    return ", ".join(str(item) for item in value)
