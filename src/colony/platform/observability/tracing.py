"""Traces: one checkout is one trace, across every call, event and saga step, in any topology.

OpenTelemetry's API, configured once per process by :func:`configure_tracing`. Colony's own
spans are recorded by :mod:`~colony.platform.observability.recorder` (the SDK's span costs
too much at this rate: see there); the SDK records any other library's, and exports to OTLP.

- **Sampling** is decided at the root (a gateway request, a piece of background work) with
  the ratio ``COLONY_TRACE_SAMPLE_RATIO``, and followed by every span below it, in this
  process and in every one the trace context reaches (W3C ``traceparent``, in the HTTP
  binding's headers and in each event's headers through the outbox and the broker).
- **Unsampled is nearly free.** A span below an unsampled one is not created at all
  (:func:`child` returns a shared no-op), and an unsampled root is only its ``traceparent``,
  carried on: a checkout crosses about a hundred places that may open a span.
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
from collections.abc import Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeGuard

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags

from colony.platform import context as call_context
from colony.platform.observability.recorder import (
    FINISHED,
    RECORDING,
    RecordedSpan,
    SdkSpans,
    current_span,
    use_resource,
)
from colony.platform.observability.trace_store import (
    CORRELATION_ID,
    ORDER_ID,
    StoredSpan,
    TraceStore,
)

TRACEPARENT = "traceparent"

STORE = TraceStore()
"""This process's trace store: the console's, in the gateway's process."""

UNSAMPLED: ContextVar[int | str | None] = ContextVar("colony_unsampled_trace", default=None)
"""The context of an unsampled trace this work belongs to, carried on and never recorded: the
ids drawn for it here (:func:`new_root`'s, formatted only if something asks), or the
``traceparent`` it arrived with. A busy edge sets it itself; elsewhere the block that
:func:`span` or :func:`root` hands out does."""
_LOWER_64 = (1 << 64) - 1
_draw = random.getrandbits
_bound = 0
"""A new trace is sampled when the lower 64 bits of its id are below this (TraceIdRatioBased's
rule, so a collector sampling by ratio agrees)."""
_enabled = True
_service_of_process = ""


class _NoSpan:
    """What :func:`child` returns below an unsampled span: enters and leaves, does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


# --- spans ------------------------------------------------------------------------------------


def recording() -> bool:
    """Whether a span of Colony's records here (so spans below it are worth opening, and
    their names and attributes worth building)."""
    return RECORDING.get() is not None


def records(span: object) -> TypeGuard[RecordedSpan]:
    """Whether ``span`` (what :func:`span` or :func:`root` gave) is recorded: its attributes
    are worth building only then, and most are not."""
    return type(span) is RecordedSpan


def child(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    service: str | None = None,
) -> Any:
    """A span under the current one if that one is sampled, else nothing at all (no span is
    ever a root through here: background work does not start traces of its own by a
    database transaction)."""
    if RECORDING.get() is None:
        return NO_SPAN
    current = current_span()  # Colony's, or a library's span opened below it
    parent = current if type(current) is RecordedSpan else current.get_span_context()
    return _open(name, kind, attributes, service, parent, ())


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
    sampled at the ratio. With ``keep``, sampled whatever the parent says. Where work comes
    often, give the attributes once it :func:`records`: most of it is not sampled."""
    if parent is not None:
        if len(parent) == 55 and parent[-3:] == "-00" and not keep:
            # Nothing below is recorded: only carry the context on, so calls from here tell
            # the next process "not sampled" rather than start a trace of their own.
            return _Inherited(parent)
        remote = _span_context_of(parent)
        if remote is not None:
            return _open(name, kind, attributes, service, remote, links)
        # A malformed traceparent: as if there were none.
    current = current_span()
    context = current.get_span_context()
    if context.is_valid:
        if context.trace_flags.sampled or keep:
            parent_span = current if type(current) is RecordedSpan else context
            return _open(name, kind, attributes, service, parent_span, links)
        return NO_SPAN
    inherited = UNSAMPLED.get()
    if inherited is not None:
        if not keep:
            return NO_SPAN
        carried = _span_context_of(_traceparent(inherited))
        return _open(name, kind, attributes, service, carried, links)
    return root(name, kind, attributes, service, links, keep)


def root(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    service: str | None = None,
    links: Sequence[Link] = (),
    keep: bool = False,
) -> Any:
    """The first span of a new trace, whatever is current (the public edge trusts no
    caller's context), sampled at the ratio. Decided from the trace id, and when it is not
    sampled nothing is made but the context it carries on."""
    ids = _draw(192) | 1  # a trace id, then a span id (never 0)
    if ((ids >> 64) & _LOWER_64) >= _bound and not keep:
        return _Inherited(ids)
    return _open(name, kind, attributes, service, None, links, ids >> 64)


def new_root(kind: SpanKind, service: str) -> RecordedSpan | int:
    """A new trace where requests arrive by the thousand: its root span, still unnamed (it is
    named once its work is known), if the trace is sampled; else only the trace's ids, which
    the caller sets in :data:`UNSAMPLED` for the request's time. What :func:`root` does,
    without a block object and its three calls for the nine requests in ten that record
    nothing."""
    ids = _draw(192) | 1
    if ((ids >> 64) & _LOWER_64) >= _bound or not _enabled:
        return ids
    return RecordedSpan("", kind, service, {}, ids >> 64, None)


def _open(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None,
    service: str | None,
    parent: RecordedSpan | SpanContext | None,
    links: Sequence[Link],
    trace_id: int = 0,
) -> Any:
    if not _enabled:
        return NO_SPAN
    attrs = dict(attributes) if attributes else {}
    if kind is SpanKind.SERVER or kind is SpanKind.CONSUMER:
        # Where work enters a process: the trace is found by its correlation id there.
        correlation = call_context.correlation_id()
        if correlation:
            attrs[CORRELATION_ID] = correlation
    if type(parent) is RecordedSpan:
        return RecordedSpan(
            name,
            kind,
            service or parent.service,
            attrs,
            parent.trace_id,
            parent.span_id,
            links,
            trace_hex=parent.trace_hex,
        )
    service = service or _service_of_process
    if parent is None:
        trace_id = trace_id or random.getrandbits(128)
        return RecordedSpan(name, kind, service, attrs, trace_id, None, links)
    return RecordedSpan(name, kind, service, attrs, parent.trace_id, parent.span_id, links)


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _span_context_of(traceparent: str) -> SpanContext | None:
    """The span context a ``traceparent`` (version 00) names, or None if it is not one.
    Parsed here: the propagator's regular expression costs three times this, once per
    event."""
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
    return SpanContext(trace_id, span_id, True, _SAMPLED if flags & 1 else _NOT_SAMPLED)


class _Inherited:
    """The block belongs to an unsampled trace: its context is carried on, nothing recorded."""

    __slots__ = ("_carried", "_token")

    def __init__(self, carried: int | str) -> None:
        self._carried = carried

    def __enter__(self) -> None:
        self._token = UNSAMPLED.set(self._carried)

    def __exit__(self, *exc: object) -> None:
        UNSAMPLED.reset(self._token)


def _traceparent(carried: int | str) -> str:
    """An unsampled trace's context as a ``traceparent``: as it arrived, or written out from
    the ids drawn for it (only now: a request that asks nothing, as most reads do, never
    formats it)."""
    if type(carried) is str:
        return carried
    ids = f"{carried:048x}"
    return f"00-{ids[:32]}-{ids[32:]}-00"


def annotate(**attributes: Any) -> None:
    """Add attributes to the current span, if it records (``order_id=`` becomes
    ``colony.order_id``, what the console searches by)."""
    if RECORDING.get() is None:  # none of Colony's spans records here, as for most work
        return
    current = current_span()
    if not current.is_recording():
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(ORDER_ID if key == "order_id" else key, value)


def name_server_span(
    server: RecordedSpan, method: str, route: str, status: int, path: str | None = None
) -> None:
    """Name a server span by its route, once the router has matched it, give it what HTTP's
    conventions record of a request, and mark a 5xx as its error (a 4xx is the client's, not
    the server's)."""
    server.name = f"{method} {route}"
    attributes = server.attributes
    attributes["http.request.method"] = method
    if path is not None:
        attributes["url.path"] = path
    attributes["http.route"] = route
    attributes["http.response.status_code"] = status
    if status >= 500:
        server.set_status(StatusCode.ERROR, f"answered {status}")


def failed(message: str) -> None:
    """Mark the current span as failed (an answer that is an error without an exception)."""
    if RECORDING.get() is None:
        return
    current = current_span()
    if current.is_recording():
        current.set_status(StatusCode.ERROR, message)


def record_after(
    name: str,
    start_ns: int,
    end_ns: int,
    kind: SpanKind,
    service: str,
    attributes: Mapping[str, Any],
    error: str | None,
) -> None:
    """Record a span that was not sampled when it began, now that its ending says it must
    be kept (a request answered with a 5xx). Inside the unsampled trace's context, it takes
    the ids that context carried, so its log lines, and any span kept below it, find it."""
    if not _enabled:
        return
    inherited = UNSAMPLED.get()
    carried = _span_context_of(_traceparent(inherited)) if inherited else None
    recorded = RecordedSpan(
        name,
        kind,
        service,
        dict(attributes),
        carried.trace_id if carried else random.getrandbits(128),
        None,
        start_ns=start_ns,
        span_id=carried.span_id if carried else None,
    )
    if error is not None:
        recorded.set_status(StatusCode.ERROR, error)
    recorded.end(end_ns)


# --- propagation ------------------------------------------------------------------------------


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent``) into outgoing headers, if any.
    Formatted here: the trace state is never set by Colony, and the propagator's own
    formatting costs several times this."""
    # Only where one of Colony's spans records is the current span worth asking for (most
    # work is unsampled); elsewhere the context carried on is the unsampled trace's (a span a
    # library opened as a root of its own is not propagated, Colony's trace is).
    if RECORDING.get() is not None:
        context = current_span().get_span_context()
        if context.is_valid:
            headers[TRACEPARENT] = (
                f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
            )
            return
    inherited = UNSAMPLED.get()
    if inherited is not None:
        headers[TRACEPARENT] = _traceparent(inherited)


def extract(headers: Mapping[str, str]) -> str | None:
    """The ``traceparent`` a caller or an event carries, or None (what :func:`span` takes as
    its ``parent``)."""
    return headers.get(TRACEPARENT)


def link_to(traceparent: str | None) -> list[Link]:
    """A link to the trace ``traceparent`` names (for work caused by it, not part of it)."""
    if not traceparent:
        return []
    context = _span_context_of(traceparent)
    return [] if context is None else [Link(context)]


def current_traceparent() -> str | None:
    """The current trace context as a ``traceparent`` value, to keep for later links."""
    headers: dict[str, str] = {}
    inject(headers)
    return headers.get(TRACEPARENT)


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids, in hex, for a log line."""
    if RECORDING.get() is not None:
        context = current_span().get_span_context()
        if context.is_valid:
            return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    inherited = UNSAMPLED.get()
    if inherited is None:
        return None
    traceparent = _traceparent(inherited)  # an unsampled trace: its ids, and the caller's span
    return traceparent[3:35], traceparent[36:52]


def log_event(level: str, event: str) -> None:
    """Add a log line to the current span, if it records: a trace's page shows its logs."""
    if RECORDING.get() is None:
        return
    current = current_span()
    if current.is_recording():
        current.add_event("log", {"level": level, "event": event[:1000]})


# --- collection -------------------------------------------------------------------------------


class _Ratio(Sampler):
    """The SDK's sampler, for spans other libraries open through the API: parent-based, with
    the same ratio at the root as Colony's own (and changed with it)."""

    def __init__(self) -> None:
        self._usual = ParentBased(TraceIdRatioBased(0.0))

    def set_ratio(self, ratio: float) -> None:
        self._usual = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return self._usual.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return str(self._usual.get_description())


_sdk_sampler = _Ratio()
_provider: TracerProvider | None = None


def configure_tracing(process: str, instance: str, ratio: float) -> None:
    """Set this process's tracing up, once (later calls change the ratio only, for a process
    that starts several runtimes, as tests do)."""
    global _provider, _bound, _enabled, _service_of_process
    FINISHED.process = f"{process}/{instance}" if instance and instance != process else process
    _service_of_process = process
    _bound = TraceIdRatioBased.get_bound_for_rate(ratio)
    _sdk_sampler.set_ratio(ratio)
    if _provider is not None:
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        _enabled = False
        return
    resource = Resource.create(
        {"service.name": process, "service.instance.id": instance, "service.namespace": "colony"}
    )
    use_resource(resource)
    _provider = TracerProvider(resource=resource, sampler=_sdk_sampler)
    _provider.add_span_processor(SdkSpans())
    if _otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The standard exporter, on its own thread with its own HTTP client: it reads the
        # standard variables (endpoint, headers, timeout) as every OTel tool documents them.
        exporter = BatchSpanProcessor(OTLPSpanExporter())
        _provider.add_span_processor(exporter)
        FINISHED.exporter = exporter
    trace.set_tracer_provider(_provider)


def _otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def finished_spans() -> list[StoredSpan]:
    """The sampled spans finished since the last call, as the store keeps them."""
    return FINISHED.take()


def new_trace_id() -> str:
    """A random trace id in hex (for tests and tools that fabricate a context)."""
    return format(random.getrandbits(128), "032x")
