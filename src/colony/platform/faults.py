"""Faults this process injects into itself, on request: the seam through which the fault
injector (``colony faults``, :mod:`colony.faults`) breaks one link, one consumer or the clock
of a running process, and mends it again.

Nothing is injected unless asked. The platform asks :func:`link_fault` before each attempt of
an outbound call and :func:`delivery_fault` before each delivery to a consumer; with nothing
installed, each answer is one lookup in an empty dict. What can be installed:

- on the **link** to one dependency (a service's name, ``payment-provider``, ``smtp``,
  ``webhooks``): added latency; a connection reset; a 503; a dropped request (the call hangs
  until the caller's own timeout or deadline ends it, as when a partition swallows packets);
  a lost response (the call happened and had its effect; the caller never hears);
- on a **consumer** (named after its service): each message delivered twice; messages held for
  a moment and delivered in shuffled order; a pause before each message (a slow consumer);
- the **clock** of the whole process (:func:`colony.platform.clock.set_skew`).

A link or duplicate fault may carry a probability, so "errors on half the calls" is one fault.
Every delivery fault still goes through the consumer's inbox: a duplicate is a second delivery
in a transaction of its own, as a broker's redelivery would be, and has no second effect.

Faults are installed over HTTP by :func:`admin_routes` (``/admin/faults``), which a process
serves only when ``COLONY_FAULT_INJECTION`` is on, and answers only callers on this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform import clock
from colony.platform.errors import (
    ColonyError,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from colony.platform.ids import new_id
from colony.platform.web.problems import problem_response

if TYPE_CHECKING:
    from colony.platform.messaging.message import Message

HANG_SECONDS = 3600.0
"""How long a dropped call hangs: longer than any caller waits, so the caller's timeout ends it."""

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Millis = Annotated[float, msgspec.Meta(ge=0.0, le=600_000.0)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
FaultId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._~-]{1,128}$")]
_YEAR = 365 * 24 * 3600.0


class _Fault(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    id: FaultId | None = None
    """Chosen by the injector (the same on every replica it installs the fault on), else
    assigned here. Installing a fault under the id of an installed one replaces it."""


class _OnLink(_Fault, frozen=True, kw_only=True):
    dependency: Name
    probability: Probability = 1.0


class Latency(_OnLink, frozen=True, kw_only=True, tag="latency"):
    """Each call waits ``delay_ms``, give or take up to ``jitter_ms``, before it is sent."""

    delay_ms: Millis
    jitter_ms: Millis = 0.0


class Reset(_OnLink, frozen=True, kw_only=True, tag="reset"):
    """The connection is reset before the request leaves: ConnectionResetError, no effect."""


class Unavailable(_OnLink, frozen=True, kw_only=True, tag="unavailable"):
    """The dependency answers 503 before it acts: ServiceUnavailable, no effect."""


class Drop(_OnLink, frozen=True, kw_only=True, tag="drop"):
    """The request vanishes: the call hangs until the caller's own timeout ends it."""


class LoseResponse(_OnLink, frozen=True, kw_only=True, tag="lose-response"):
    """The call is made and has its effect; its answer is lost: TimeoutError."""


class _OnConsumer(_Fault, frozen=True, kw_only=True):
    consumer: Name


class Duplicate(_OnConsumer, frozen=True, kw_only=True, tag="duplicate"):
    """Each message (or this share of them) is delivered again once it has been applied."""

    probability: Probability = 1.0


class Reorder(_OnConsumer, frozen=True, kw_only=True, tag="reorder"):
    """Messages are held for ``window_ms`` and what arrived meanwhile is delivered shuffled."""

    window_ms: Annotated[float, msgspec.Meta(gt=0.0, le=60_000.0)] = 200.0


class SlowConsumer(_OnConsumer, frozen=True, kw_only=True, tag="slow-consumer"):
    """The consumer waits ``delay_ms`` before applying each message."""

    delay_ms: Millis


class ClockSkew(_Fault, frozen=True, kw_only=True, tag="clock-skew"):
    """The process's clock is off by ``seconds`` (negative: behind). One per process: a new
    skew replaces the one installed."""

    seconds: Annotated[float, msgspec.Meta(ge=-_YEAR, le=_YEAR)]


FaultSpec = (
    Latency
    | Reset
    | Unavailable
    | Drop
    | LoseResponse
    | Duplicate
    | Reorder
    | SlowConsumer
    | ClockSkew
)
LINK_KINDS = (Latency, Reset, Unavailable, Drop, LoseResponse)
DELIVERY_KINDS = (Duplicate, Reorder, SlowConsumer)

_rng = random.Random()


def _happens(probability: float) -> bool:
    return probability >= 1.0 or _rng.random() < probability


class LinkFault:
    """Everything installed on the link to one dependency, applied in the order installed.

    The caller runs ``await before_call()`` before each attempt and ``after_call()`` after an
    attempt that returned, both inside the attempt's timeout: a dropped call then ends as the
    caller's timeout, a lost answer as a TimeoutError, each counted as a failure of the link.
    """

    __slots__ = ("_after", "_before", "dependency")

    def __init__(self, dependency: str, faults: Sequence[_OnLink]) -> None:
        self.dependency = dependency
        self._before = tuple(f for f in faults if not isinstance(f, LoseResponse))
        self._after = tuple(f for f in faults if isinstance(f, LoseResponse))

    async def before_call(self) -> None:
        for fault in self._before:
            if not _happens(fault.probability):
                continue
            if isinstance(fault, Latency):
                jitter = _rng.uniform(-fault.jitter_ms, fault.jitter_ms) if fault.jitter_ms else 0
                await asyncio.sleep(max(0.0, fault.delay_ms + jitter) / 1000)
            elif isinstance(fault, Reset):
                raise ConnectionResetError(
                    f"injected fault: the connection to {self.dependency} was reset"
                )
            elif isinstance(fault, Unavailable):
                raise ServiceUnavailable(f"injected fault: {self.dependency} is unavailable")
            else:
                await asyncio.sleep(HANG_SECONDS)
                raise TimeoutError(f"injected fault: the call to {self.dependency} was dropped")

    def after_call(self) -> None:
        for fault in self._after:
            if _happens(fault.probability):
                raise TimeoutError(f"injected fault: the answer from {self.dependency} was lost")


Apply = Callable[[list["Message"]], Awaitable[None]]


class DeliveryFault:
    """Everything installed on one consumer. ``deliver(messages, apply)`` stands where the
    consumer would call ``apply(messages)``: it returns once every message it was given has
    been applied (or raises, and the broker delivers them again), so an acknowledgement is
    still never sent for a message that was not applied."""

    def __init__(
        self,
        consumer: str,
        duplicate: Duplicate | None = None,
        reorder: Reorder | None = None,
        slow: SlowConsumer | None = None,
    ) -> None:
        self.consumer = consumer
        self.duplicate = duplicate
        self.reorder = reorder
        self.slow = slow
        self._held: list[Message] = []
        self._window: asyncio.Future[None] | None = None

    async def deliver(self, messages: list[Message], apply: Apply) -> None:
        if self.slow is not None:
            # Outside any transaction: a slow consumer must not hold its database's writers.
            await asyncio.sleep(self.slow.delay_ms / 1000 * len(messages))
        if self.reorder is not None:
            await self._shuffled(messages, apply, self.reorder.window_ms / 1000)
        else:
            await self._apply(messages, apply)

    async def _apply(self, messages: list[Message], apply: Apply) -> None:
        await apply(messages)
        if self.duplicate is not None:
            again = [m for m in messages if _happens(self.duplicate.probability)]
            if again:
                await apply(again)

    async def _shuffled(self, messages: list[Message], apply: Apply, window: float) -> None:
        """The first delivery of a window waits it out, then applies what every delivery
        of the window brought, shuffled; the others wait for that to finish."""
        self._held.extend(messages)
        if self._window is not None:
            await asyncio.shield(self._window)
            return
        done = self._window = asyncio.get_running_loop().create_future()
        # Retrieved here, so a window nobody else waited on logs no unretrieved error.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.sleep(window)
            held, self._held, self._window = self._held, [], None
            _rng.shuffle(held)
            await self._apply(held, apply)
        except BaseException as exc:
            if self._window is done:
                self._held, self._window = [], None
            done.set_exception(RuntimeError(f"the held messages were not applied: {exc!r}"))
            raise
        done.set_result(None)


# --- the table ----------------------------------------------------------------------------

_installed: dict[str, FaultSpec] = {}
_links: dict[str, LinkFault] = {}
_deliveries: dict[str, DeliveryFault] = {}


def link_fault(dependency: str) -> LinkFault | None:
    """The fault on calls to ``dependency`` (a service's name, ``payment-provider``, ``smtp``,
    ``webhooks``), or None: nearly always, and then at the cost of one dict lookup."""
    return _links.get(dependency)


def delivery_fault(consumer: str) -> DeliveryFault | None:
    """The fault on deliveries to the consumer named ``consumer``, or None."""
    return _deliveries.get(consumer)


def install(fault: FaultSpec) -> FaultSpec:
    """Install ``fault`` (replacing one with the same id); returns it with its id."""
    if fault.id is None:
        fault = msgspec.structs.replace(fault, id=new_id())
    assert fault.id is not None
    if isinstance(fault, ClockSkew):
        for other in [f for f in _installed.values() if isinstance(f, ClockSkew)]:
            assert other.id is not None
            del _installed[other.id]
    _installed[fault.id] = fault
    _rebuild()
    return fault


def heal(fault_id: str) -> bool:
    """Remove one fault; False if none has that id."""
    found = _installed.pop(fault_id, None) is not None
    if found:
        _rebuild()
    return found


def heal_all() -> int:
    """Remove every fault; returns how many there were."""
    count = len(_installed)
    _installed.clear()
    _rebuild()
    return count


def active() -> list[FaultSpec]:
    return list(_installed.values())


def _rebuild() -> None:
    global _links, _deliveries
    on_links: dict[str, list[_OnLink]] = {}
    on_consumers: dict[str, dict[type, Any]] = {}
    skew = 0.0
    for fault in _installed.values():
        if isinstance(fault, LINK_KINDS):
            on_links.setdefault(fault.dependency, []).append(fault)
        elif isinstance(fault, DELIVERY_KINDS):
            on_consumers.setdefault(fault.consumer, {})[type(fault)] = fault
        elif isinstance(fault, ClockSkew):
            skew = fault.seconds
    _links = {name: LinkFault(name, faults) for name, faults in on_links.items()}
    _deliveries = {
        name: DeliveryFault(name, kinds.get(Duplicate), kinds.get(Reorder), kinds.get(SlowConsumer))
        for name, kinds in on_consumers.items()
    }
    clock.set_skew(skew)


# --- the admin surface --------------------------------------------------------------------

_MAX_BODY_BYTES = 16 * 1024
_encode = msgspec.json.Encoder().encode
_decode: Callable[[bytes], FaultSpec] = msgspec.json.Decoder(FaultSpec).decode


def admin_routes() -> list[Route]:
    """``GET /admin/faults`` (what is installed, and the clock's skew), ``PUT /admin/faults``
    (install one fault: its JSON, ``kind`` first), ``DELETE /admin/faults`` (heal every one)
    and ``DELETE /admin/faults/{id}`` (heal one; 404 if it is not installed). Bad input is a
    problem with a 4xx status; a caller not on this machine is refused (403)."""
    return [
        Route("/admin/faults", _faults_endpoint, methods=["GET", "PUT", "DELETE"]),
        Route("/admin/faults/{fault_id}", _fault_endpoint, methods=["DELETE"]),
    ]


async def _faults_endpoint(request: Request) -> Response:
    try:
        _require_local(request)
        if request.method == "PUT":
            return _json(install(await _decoded_body(request)))
        if request.method == "DELETE":
            return _json({"healed": heal_all()})
        return _json({"faults": active(), "clock_skew_seconds": clock.skew_seconds()})
    except ColonyError as exc:
        return problem_response(exc, request.url.path)


async def _fault_endpoint(request: Request) -> Response:
    try:
        _require_local(request)
        fault_id = request.path_params["fault_id"]
        if not heal(fault_id):
            raise NotFound(f"no fault {fault_id!r} is installed")
        return _json({"healed": 1})
    except ColonyError as exc:
        return problem_response(exc, request.url.path)


def _require_local(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    if not local:
        raise Forbidden("faults are injected only from this machine")


async def _decoded_body(request: Request) -> FaultSpec:
    body = await request.body()
    if len(body) > _MAX_BODY_BYTES:
        raise PayloadTooLarge(f"a fault is at most {_MAX_BODY_BYTES} bytes of JSON")
    try:
        return _decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"not a fault: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedRequest(f"not JSON: {exc}") from None


def _json(value: object) -> Response:
    return Response(_encode(value), media_type="application/json")
