"""The simulator's ASGI app: the payment API under ``/v1``, ``/admin`` and ``/health``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from colony.payment_provider.api import (
    AuthorizeRequest,
    Behaviour,
    CaptureRequest,
    IntentLookup,
    PaymentIntent,
    Refund,
    RefundRequest,
    Stats,
)
from colony.payment_provider.behaviour import Counters, Dice
from colony.payment_provider.faults import HANG_SECONDS, FaultInjector
from colony.payment_provider.ledger import Idempotency, Ledger
from colony.platform import context
from colony.platform.errors import MalformedRequest, NotFound, Unauthorized
from colony.platform.security import Actor
from colony.platform.web.api import IDEMPOTENCY_HEADER, ApiRouter, Call
from colony.platform.web.limits import BodySizeLimit
from colony.platform.web.problems import install_problem_handlers

MAX_BODY_BYTES = 16 * 1024
R = TypeVar("R")


@dataclass
class Provider:
    """The simulator's state: its books, its behaviour, and its counters."""

    ledger: Ledger
    dice: Dice = field(default_factory=Dice)
    counters: Counters = field(default_factory=Counters)

    async def stats(self) -> Stats:
        c = self.counters
        return Stats(
            requests=c.requests,
            replays=c.replays,
            outage_rejections=c.outage_rejections,
            injected_errors=c.injected_errors,
            timeouts_before_effect=c.timeouts_before_effect,
            timeouts_after_effect=c.timeouts_after_effect,
            bad_answers=c.bad_answers,
            audit_requests=c.audit_requests,
            **await self.ledger.counts(),
            totals=await self.ledger.totals(),
        )


async def _no_auth(request: Request) -> Actor:
    # No route declares auth: the simulator trusts every caller, like a test-mode account.
    raise Unauthorized()


def _idempotency(call: Call) -> Idempotency:
    request = context.idempotency_request()
    if request is None:
        raise MalformedRequest("This request needs an Idempotency-Key header.")
    return Idempotency(
        call.request.url.path, call.request.headers[IDEMPOTENCY_HEADER], request.fingerprint
    )


def _payment_routes(provider: Provider) -> ApiRouter:
    v1 = ApiRouter("/v1", _no_auth)
    ledger = provider.ledger

    def counted(result: R, replayed: bool) -> R:
        if replayed:
            provider.counters.replays += 1
        return result

    @v1.route(
        "POST",
        "/payment_intents",
        summary="Authorize a payment (a decline is a 201 with status declined)",
        tag="payments",
        body=AuthorizeRequest,
        response=PaymentIntent,
        status=201,
        errors=(400, 500, 503, 504),
    )
    async def authorize(call: Call) -> PaymentIntent:
        decline = provider.dice.chance(provider.dice.behaviour.decline_rate)
        return counted(*await ledger.authorize(_idempotency(call), call.body, decline))

    @v1.route(
        "POST",
        "/payment_intents/{id}/capture",
        summary="Capture all ({}) or part of an authorization",
        tag="payments",
        body=CaptureRequest,
        response=PaymentIntent,
        errors=(400, 404, 409, 500, 503, 504),
    )
    async def capture(call: Call) -> PaymentIntent:
        idem = _idempotency(call)
        return counted(*await ledger.capture(idem, call.path["id"], call.body.amount))

    @v1.route(
        "POST",
        "/payment_intents/{id}/void",
        summary="Release an authorization",
        tag="payments",
        response=PaymentIntent,
        errors=(400, 404, 409, 500, 503, 504),
    )
    async def void(call: Call) -> PaymentIntent:
        return counted(*await ledger.void(_idempotency(call), call.path["id"]))

    @v1.route(
        "POST",
        "/payment_intents/{id}/refunds",
        summary="Refund part or all of what was captured",
        tag="payments",
        body=RefundRequest,
        response=Refund,
        status=201,
        errors=(400, 404, 409, 500, 503, 504),
    )
    async def refund(call: Call) -> Refund:
        idem = _idempotency(call)
        return counted(*await ledger.refund(idem, call.path["id"], call.body.amount))

    @v1.route(
        "GET",
        "/payment_intents/{id}",
        summary="One payment intent",
        tag="payments",
        response=PaymentIntent,
        errors=(404, 500, 503, 504),
    )
    async def get_intent(call: Call) -> PaymentIntent:
        intent = await ledger.get(call.path["id"])
        if intent is None:
            raise NotFound(f"No payment intent {call.path['id']}.")
        return intent

    @v1.route(
        "GET",
        "/payment_intents",
        summary="The intent an Idempotency-Key created (404: that key never took effect)",
        tag="payments",
        query=IntentLookup,
        response=PaymentIntent,
        errors=(404, 500, 503, 504),
    )
    async def find_intent(call: Call) -> PaymentIntent:
        intent = await ledger.by_idempotency_key(call.query.idempotency_key)
        if intent is None:
            raise NotFound("No payment intent was created with this Idempotency-Key.")
        return intent

    return v1


def _admin_routes(provider: Provider) -> ApiRouter:
    admin = ApiRouter("/admin", _no_auth)

    @admin.route(
        "GET", "/behaviour", summary="The current behaviour", tag="admin", response=Behaviour
    )
    async def get_behaviour(call: Call) -> Behaviour:
        return provider.dice.behaviour

    @admin.route(
        "PUT",
        "/behaviour",
        summary="Replace the behaviour (omitted fields take their defaults)",
        tag="admin",
        body=Behaviour,
        response=Behaviour,
    )
    async def put_behaviour(call: Call) -> Behaviour:
        provider.dice.set(call.body)
        return provider.dice.behaviour

    @admin.route(
        "POST",
        "/reset",
        summary="Default behaviour and zeroed counters (the books are kept)",
        tag="admin",
        response=Behaviour,
    )
    async def reset(call: Call) -> Behaviour:
        provider.dice.set(Behaviour())
        provider.counters.reset()
        return provider.dice.behaviour

    @admin.route("GET", "/stats", summary="Counters and totals", tag="admin", response=Stats)
    async def stats(call: Call) -> Stats:
        return await provider.stats()

    return admin


def create_app(provider: Provider, hang_seconds: float = HANG_SECONDS) -> ASGIApp:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        *_payment_routes(provider).routes(),
        *_admin_routes(provider).routes(),
        Route("/health", health),
    ]
    app = Starlette(routes=routes)
    install_problem_handlers(app)
    faulty = FaultInjector(app, provider.dice, provider.counters, hang_seconds)
    return BodySizeLimit(faulty, MAX_BODY_BYTES)
