"""Traces: one checkout is one trace, across every call, event and saga step, in any topology.

OpenTelemetry's API and SDK, configured once per process by :func:`configure_tracing`:

- **Sampling** is decided at the root (a gateway request, a piece of background work) with
  the ratio ``COLONY_TRACE_SAMPLE_RATIO``, and followed by every span below it, in this
  process and in every one the trace context reaches (W3C ``traceparent``, in the HTTP
  binding's headers and in each event's headers through the outbox and the broker).
- **Unsampled is nearly free.** A span below an unsampled one is not created at all
  (:func:`child` returns a shared no-op): the SDK's own non-recording span costs 5 µs, and a
  checkout crosses about a hundred places that may open one.
- **Errors and compensations are kept** whatever the ratio: a span opened with ``keep=True``
  (a saga turning round, each compensation) is sampled even under an unsampled parent, and
  so is everything below it; a gateway request that ends in a 5xx is recorded after the fact.
  What ran before the failure in an unsampled trace was not recorded and cannot be: keeping
  whole traces by their ending needs every span buffered until the end (a tail decision),
  which is an OpenTelemetry Collector's ``tail_sampling`` job. Run Colony at ratio 1 behind
  such a collector for that.
- **Where spans go.** To Colony's own :class:`~colony.platform.observability.trace_store.
  TraceStore`, which the console reads: in the gateway's process directly, from every other
  process through the gateway's ``/internal/spans`` (signed with the process's service
  token, like any call between processes). And, when the standard variables name one
  (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and friends), to
  any OTLP collector too: Jaeger, Tempo, the Aspire dashboard.

Every span carries ``colony.service`` (whose code it timed) and, where there is one,
``colony.order_id`` and ``colony.correlation_id``; every log line carries ``trace_id`` and
``span_id``, and is added to its span as an event named ``log``.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from colony.platform import context as call_context
from colony.platform.observability.trace_store import (
    CORRELATION_ID,
    ORDER_ID,
    SpanEvent,
    SpanLink,
    StoredSpan,
    TraceStore,
)

SERVICE = "colony.service"
KEEP = "colony.keep"
"""An attribute that makes a span sampled whatever its parent: see the module's docstring."""
TRACEPARENT = "traceparent"

STORE = TraceStore()
"""This process's trace store: the console's, in the gateway's process."""

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("colony")
_service: ContextVar[str] = ContextVar("colony_trace_service", default="")
_KINDS = {
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
    SpanKind.INTERNAL: "internal",
}


class _NoSpan:
    """What :func:`child` returns below an unsampled span: enters and leaves, does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


# --- sampling ---------------------------------------------------------------------------------


class KeepOrRatio(Sampler):
    """Parent-based with a ratio at the root, except that a span marked :data:`KEEP` is
    always sampled."""

    def __init__(self, ratio: float) -> None:
        self.set_ratio(ratio)

    def set_ratio(self, ratio: float) -> None:
        self._ratio = ratio
        self._usual = ParentBased(TraceIdRatioBased(ratio))
        self.bound = TraceIdRatioBased.get_bound_for_rate(ratio)
        """A trace is sampled when the lower 64 bits of its id are below this."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if attributes and attributes.get(KEEP):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid:  # what ParentBased decides, without its dispatch
            decision = Decision.RECORD_AND_SAMPLE if parent.trace_flags.sampled else Decision.DROP
            return SamplingResult(decision, attributes, parent.trace_state)
        return self._usual.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"KeepOrRatio({self._ratio})"


# --- spans ------------------------------------------------------------------------------------


def recording() -> bool:
    """Whether the current span is sampled (so spans below it are worth opening)."""
    return trace.get_current_span().get_span_context().trace_flags.sampled


def child(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    service: str | None = None,
) -> Any:
    """A span under the current one if that one is sampled, else nothing at all (no span is
    ever a root through here: background work does not start traces of its own by a
    database transaction)."""
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return NO_SPAN
    return _Opened(name, kind, attributes, service, None, ())


def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    service: str | None = None,
    parent: str | None = None,
    links: Sequence[Link] = (),
    keep: bool = False,
) -> Any:
    """A span that may start a trace, under ``parent`` if given (the ``traceparent`` a caller
    or an event carried), else under the current span, else at the root of a new trace,
    sampled at the ratio. With ``keep``, sampled whatever the parent says."""
    if parent is not None:
        if _unsampled(parent) and not keep:
            # Nothing below is recorded: only carry the context on, so calls from here tell
            # the next process "not sampled" rather than start a trace of their own.
            return _Inherited(parent)
        return _Opened(name, kind, attributes, service, _context_of(parent), links, keep)
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        if current.trace_flags.sampled or keep:
            return _Opened(name, kind, attributes, service, None, links, keep)
        return NO_SPAN
    inherited = _inherited.get()
    if inherited is not None:
        if not keep:
            return NO_SPAN
        return _Opened(name, kind, attributes, service, _context_of(inherited), links, keep)
    # A new trace: decided here, as TraceIdRatioBased would from the id, and when it is not
    # sampled nothing is made but its context (the SDK's non-recording span costs 5 µs).
    trace_id = random.getrandbits(128)
    if (trace_id & _LOWER_64) >= _sampler.bound and not keep:
        return _Inherited(f"00-{trace_id:032x}-{random.getrandbits(64):016x}-00")
    return _Opened(name, kind, attributes, service, None, links, True)


_LOWER_64 = (1 << 64) - 1
_inherited: ContextVar[str | None] = ContextVar("colony_unsampled_traceparent", default=None)
"""The context of an unsampled trace this work belongs to: carried on, never recorded."""


def _unsampled(traceparent: str) -> bool:
    return len(traceparent) == 55 and traceparent.endswith("-00")


def _context_of(traceparent: str) -> otel_context.Context | None:
    """The context a ``traceparent`` (version 00) names, or None if it is not one. Parsed
    here: the propagator's regular expression costs three times this, once per event."""
    if len(traceparent) != 55 or traceparent[:3] != "00-" or traceparent[35] != "-":
        return None
    try:
        trace_id = int(traceparent[3:35], 16)
        span_id = int(traceparent[36:52], 16)
        flags = int(traceparent[53:55], 16)
    except ValueError:
        return None
    if traceparent[52] != "-" or not trace_id or not span_id:
        return None
    remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return trace.set_span_in_context(NonRecordingSpan(remote))


class _Inherited:
    """The block belongs to an unsampled trace: its context is carried on, nothing recorded."""

    __slots__ = ("_token", "_traceparent")

    def __init__(self, traceparent: str) -> None:
        self._traceparent = traceparent

    def __enter__(self) -> None:
        self._token = _inherited.set(self._traceparent)

    def __exit__(self, *exc: object) -> None:
        _inherited.reset(self._token)


class _Opened:
    """A recorded span, current while the block runs: what the SDK's
    ``start_as_current_span`` does, without its two layers of generators (half its cost)."""

    __slots__ = ("_inherit_token", "_owner", "_owner_token", "_span", "_token")

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
        service: str | None,
        parent: otel_context.Context | None,
        links: Sequence[Link],
        keep: bool = False,
    ) -> None:
        owner = service or _service.get()
        attrs: dict[str, Any] = {SERVICE: owner, **attributes} if attributes else {SERVICE: owner}
        if kind is SpanKind.SERVER or kind is SpanKind.CONSUMER:
            # Where work enters a process: the trace is found by its correlation id there.
            correlation = call_context.correlation_id()
            if correlation:
                attrs[CORRELATION_ID] = correlation
        if keep:
            attrs[KEEP] = True
        self._owner = owner
        self._span = _tracer.start_span(
            name, context=parent, kind=kind, attributes=attrs, links=links
        )

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._owner_token = _service.set(self._owner)
        self._inherit_token = _inherited.set(None)
        return self._span

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, Exception):
            # The type and message as OpenTelemetry's exception event has them, without
            # formatting a traceback (the logs have it where it matters).
            described = f"{type(exc).__name__}: {exc}"[:500]
            self._span.add_event(
                "exception",
                {"exception.type": type(exc).__name__, "exception.message": str(exc)[:500]},
            )
            self._span.set_status(Status(StatusCode.ERROR, described))
        _inherited.reset(self._inherit_token)
        _service.reset(self._owner_token)
        otel_context.detach(self._token)
        self._span.end()


def annotate(**attributes: Any) -> None:
    """Add attributes to the current span, if it records (``order_id=`` becomes
    ``colony.order_id``, what the console searches by)."""
    current = trace.get_current_span()
    if not current.is_recording():
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(ORDER_ID if key == "order_id" else key, value)


def name_server_span(method: str, route: str, status: int) -> None:
    """Name the current server span by its route, once the router has matched it, and
    mark a 5xx as its error (a 4xx is the client's, not the server's)."""
    current = trace.get_current_span()
    if not current.is_recording():
        return
    current.update_name(f"{method} {route}")
    current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR, f"answered {status}"))


def failed(message: str) -> None:
    """Mark the current span as failed (an answer that is an error without an exception)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, message))


def record_after(
    name: str,
    start_ns: int,
    end_ns: int,
    kind: SpanKind,
    attributes: Mapping[str, Any],
    error: str | None,
) -> None:
    """Record a span that was not sampled when it began, now that its ending says it must
    be kept (a request answered with a 5xx)."""
    inherited = _inherited.get()
    opened = _tracer.start_span(
        name,
        context=_context_of(inherited) if inherited else None,
        kind=kind,
        attributes={**attributes, KEEP: True},
        start_time=start_ns,
    )
    if error is not None:
        opened.set_status(Status(StatusCode.ERROR, error))
    opened.end(end_time=end_ns)


# --- propagation ------------------------------------------------------------------------------


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent``) into outgoing headers, if any.
    Formatted here: the trace state is never set by Colony, and the propagator's own
    formatting costs several times this."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        headers[TRACEPARENT] = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )
        return
    inherited = _inherited.get()
    if inherited is not None:
        headers[TRACEPARENT] = inherited


def extract(headers: Mapping[str, str]) -> str | None:
    """The ``traceparent`` a caller or an event carries, or None (what :func:`span` takes as
    its ``parent``)."""
    return headers.get(TRACEPARENT)


def link_to(traceparent: str | None) -> list[Link]:
    """A link to the trace ``traceparent`` names (for work caused by it, not part of it)."""
    if not traceparent:
        return []
    context = _context_of(traceparent)
    if context is None:
        return []
    return [Link(trace.get_current_span(context).get_span_context())]


def current_traceparent() -> str | None:
    """The current trace context as a ``traceparent`` value, to keep for later links."""
    headers: dict[str, str] = {}
    inject(headers)
    return headers.get(TRACEPARENT)


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids, in hex, for a log line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    inherited = _inherited.get()
    if inherited is not None:  # an unsampled trace: its ids, and the caller's span
        return inherited[3:35], inherited[36:52]
    return None


def log_event(level: str, event: str) -> None:
    """Add a log line to the current span, if it records: a trace's page shows its logs."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event("log", {"level": level, "event": event[:1000]})


# --- collection -------------------------------------------------------------------------------


class _Collector(SpanProcessor):
    """Keeps finished sampled spans until the next flush, at most ``bound`` (past it the
    oldest are dropped: a process whose shipper stalls does not grow without end). A deque's
    appends and pops are atomic, so the exporter's thread and the loop may share it."""

    def __init__(self, bound: int = 20_000) -> None:
        self.finished: deque[ReadableSpan] = deque(maxlen=bound)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.finished.append(span)

    def take(self) -> list[ReadableSpan]:
        taken = []
        while self.finished:
            taken.append(self.finished.popleft())
        return taken


_collector = _Collector()
_sampler = KeepOrRatio(0.1)
_provider: TracerProvider | None = None
_process = ""


def configure_tracing(process: str, instance: str, ratio: float) -> None:
    """Set this process's tracer provider, once (later calls change the ratio only, for a
    process that starts several runtimes, as tests do)."""
    global _provider, _process
    _process = f"{process}/{instance}" if instance and instance != process else process
    if _provider is not None:
        _sampler.set_ratio(ratio)
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    resource = Resource.create(
        {"service.name": process, "service.instance.id": instance, "service.namespace": "colony"}
    )
    _sampler.set_ratio(ratio)
    _provider = TracerProvider(resource=resource, sampler=_sampler)
    _provider.add_span_processor(_collector)
    if _otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The standard exporter, on its own thread with its own HTTP client: it reads the
        # standard variables (endpoint, headers, timeout) as every OTel tool documents them.
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)


def _otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def finished_spans() -> list[StoredSpan]:
    """The sampled spans finished since the last call, as the store keeps them."""
    return [stored(span) for span in _collector.take()]


def finished_unconverted() -> list[tuple[str, ReadableSpan]]:
    """The same, as the SDK recorded them, by trace id: for this process's own store, which
    converts a span when it is first read (:func:`stored` converts one)."""
    return [(f"{span.context.trace_id:032x}", span) for span in _collector.take() if span.context]


def stored(span: ReadableSpan) -> StoredSpan:
    """A span as the store keeps it and the console shows it."""
    context = span.context
    assert context is not None
    attributes: dict[str, Any] = dict(span.attributes or ())
    attributes.pop(KEEP, None)
    for key, value in attributes.items():
        if type(value) not in _PLAIN:  # a sequence: rare, never on the hot path
            attributes[key] = _plain(value)
    service = str(attributes.pop(SERVICE, "") or _process.split("/")[0])
    parent = span.parent
    return StoredSpan(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent else None,
        name=span.name,
        kind=_KINDS.get(span.kind, "internal"),
        service=service,
        process=_process,
        start_unix_nano=span.start_time or 0,
        end_unix_nano=span.end_time or span.start_time or 0,
        status=_STATUSES.get(span.status.status_code, "unset"),
        status_message=span.status.description or "",
        attributes=attributes,
        events=[
            SpanEvent(
                name=event.name,
                time_unix_nano=event.timestamp,
                attributes={k: _plain(v) for k, v in (event.attributes or {}).items()},
            )
            for event in span.events
        ]
        if span.events
        else [],
        links=[
            SpanLink(
                trace_id=f"{link.context.trace_id:032x}", span_id=f"{link.context.span_id:016x}"
            )
            for link in span.links
        ]
        if span.links
        else [],
    )


_PLAIN = frozenset({str, int, float, bool})
_STATUSES = {StatusCode.ERROR: "error", StatusCode.OK: "ok"}


def _plain(value: Any) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    return ", ".join(str(item) for item in value)


def new_trace_id() -> str:
    """A random trace id in hex (for tests and tools that fabricate a context)."""
    return format(random.getrandbits(128), "032x")
