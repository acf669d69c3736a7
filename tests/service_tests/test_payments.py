"""Payments against the real provider simulator on a real port: the ledger, refunds and
payouts, and a provider that declines, goes down, times out or answers what cannot be
believed."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import colony.services.payments
from colony.payment_provider.api import BAD_ANSWERS
from colony.payment_provider.app import create_app
from colony.payment_provider.server import open_provider
from colony.platform.clock import utc_now_iso
from colony.platform.config import Settings
from colony.platform.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentDeclined,
    ServiceUnavailable,
)
from colony.platform.messaging import Message
from colony.platform.resilience import retried_above
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.security import Actor
from colony.platform.web.server import HttpServer, free_port
from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.payments.api import Payment, PaymentsApi
from colony.services.payments.service import PaymentsService
from trust_support import AllowedCaller

MIGRATIONS = Path(colony.services.payments.__file__).parent / "migrations"
SYSTEM = Actor.system("orders")
ADMIN = Actor(id="admin-1", role="admin")
BUYER = Actor(id="buyer-1", role="buyer")
SELLER_A = Actor(id="seller-a", role="seller")
SELLER_B = Actor(id="seller-b", role="seller")
APPROVED, DECLINED = "4242424242424242", "4000000000000002"
SHARES = {"seller-a": 3000, "seller-b": 2000}
_orders = iter(range(1_000_000))


def new_order() -> str:
    return f"order-{next(_orders)}"


@dataclass
class World:
    runtime: Runtime
    payments: PaymentsApi
    admin: httpx.AsyncClient  # the provider's admin API

    @property
    def service(self) -> PaymentsService:
        return self.runtime.services["payments"]  # type: ignore[no-any-return]

    async def behave(self, **behaviour: Any) -> None:
        response = await self.admin.put("/admin/behaviour", json=behaviour)
        assert response.status_code == 200, response.text

    async def stats(self) -> dict[str, Any]:
        return (await self.admin.get("/admin/stats")).json()  # type: ignore[no-any-return]

    async def authorize(self, order_id: str, card: str = APPROVED, **fields: Any) -> Payment:
        params: dict[str, Any] = {
            "buyer_id": BUYER.id,
            "amount_minor": 5000,
            "currency": "EUR",
            "card_number": card,
            "seller_shares": SHARES,
            **fields,
        }
        return await self.payments.authorize(SYSTEM, order_id, **params)

    async def captured(self, order_id: str, **fields: Any) -> Payment:
        await self.authorize(order_id, **fields)
        return await self.payments.capture(SYSTEM, order_id)

    async def balances(self, order_id: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in await self.payments.ledger(SYSTEM, order_id):
            found[entry.account] = found.get(entry.account, 0) + entry.amount_minor
        return {account: amount for account, amount in found.items() if amount}

    async def assert_clean_audit(self) -> None:
        audit = await self.payments.audit(SYSTEM)
        assert audit.ledger_sum_minor == 0
        assert audit.unbalanced_transactions == []
        assert audit.escrow_mismatches == []
        assert audit.provider_mismatches == []
        assert audit.double_charges == []


_NO_BREAKER = {"breaker.consecutive_failures": 10_000, "breaker.minimum_calls": 10_000}


@asynccontextmanager
async def running(
    tmp_path: Path, binding: str = "inprocess", **settings: Any
) -> AsyncIterator[World]:
    async with open_provider(":memory:") as provider:
        server = HttpServer(create_app(provider), "127.0.0.1", free_port())
        await server.start()
        # These tests are about what payments makes of each answer, one call at a time; the
        # provider's breaker, which would hold calls back after a run of timeouts, has tests
        # of its own.
        settings.setdefault("resilience", {"payment-provider": _NO_BREAKER})
        runtime = Runtime(
            Settings(data_dir=tmp_path, payment_provider_url=server.url, **settings),
            [ServiceDefinition("payments", PaymentsApi, PaymentsService, MIGRATIONS)],
            Topology.local_over_http({"payments": free_port()}) if binding == "http" else None,
        )
        try:
            await runtime.start()
            async with httpx.AsyncClient(base_url=server.url) as admin:
                yield World(runtime, AllowedCaller(runtime, PaymentsApi), admin)
        finally:
            await runtime.stop()
            await server.stop()


@pytest.fixture(params=["inprocess", "http"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """Payments called in-process, and over its HTTP binding (errors cross the wire)."""
    async with running(tmp_path, request.param) as w:
        yield w


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[World]:
    async with running(tmp_path) as w:
        yield w


@pytest.fixture
async def wary(tmp_path: Path) -> AsyncIterator[World]:
    """A short provider timeout, for answers that hang half-sent."""
    async with running(tmp_path, payment_timeout_seconds=0.25) as w:
        yield w


async def intent_of(w: World, order_id: str) -> dict[str, Any]:
    """The provider's intent for the order's authorization, as the provider has it."""
    response = await w.admin.get(
        "/v1/payment_intents", params={"idempotency_key": f"colony-{order_id}-authorize"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# Authorize and capture


async def test_authorize_then_capture_moves_the_money_into_escrow(world):
    order = new_order()
    payment = await world.authorize(order)
    assert (payment.status, payment.amount_minor, payment.card_last4) == (
        "authorized",
        5000,
        "4242",
    )
    assert payment.seller_shares == SHARES and payment.captured_minor == 0
    assert await world.payments.ledger(SYSTEM, order) == []

    captured = await world.payments.capture(SYSTEM, order)
    assert (captured.status, captured.captured_minor) == ("captured", 5000)
    assert await world.balances(order) == {"buyer:buyer-1": -5000, "escrow": 5000}
    assert await world.payments.capture(SYSTEM, order) == captured  # a no-op
    assert (await world.stats())["captures"] == 1
    events = await world.runtime.databases["payments"].fetch_value(
        "SELECT count(*) FROM outbox WHERE topic = 'payments.payment.captured'"
    )
    assert events == 1
    await world.assert_clean_audit()


async def test_a_decline_is_stored_and_raised_again(world):
    order = new_order()
    with pytest.raises(PaymentDeclined) as declined:
        await world.authorize(order, card=DECLINED)
    assert declined.value.extensions["decline_code"] == "card_declined"
    payment = await world.payments.get_payment(SYSTEM, order)
    assert (payment.status, payment.decline_code, payment.card_last4) == (
        "declined",
        "card_declined",
        "0002",
    )
    with pytest.raises(PaymentDeclined):
        await world.authorize(order, card=DECLINED)
    assert (await world.stats())["declines"] == 1
    with pytest.raises(Conflict):
        await world.payments.capture(SYSTEM, order)
    assert await world.payments.void(SYSTEM, order) == payment


async def test_repeated_and_concurrent_authorizations_make_one_intent(world):
    order = new_order()
    payments = await asyncio.gather(*(world.authorize(order) for _ in range(4)))
    payments.append(await world.authorize(order))
    assert len({p.provider_intent_id for p in payments}) == 1
    assert (await world.stats())["authorizations"] == 1


# A provider in trouble


async def test_an_outage_stores_nothing_and_a_retry_works(world):
    order = new_order()
    await world.behave(outage=True)
    with pytest.raises(ServiceUnavailable):
        await world.authorize(order)
    with pytest.raises(NotFound):
        await world.payments.get_payment(SYSTEM, order)
    # Nothing can have happened, so the saga's compensation needs no provider.
    assert await world.payments.void(SYSTEM, order) is None
    await world.behave()
    assert (await world.authorize(order)).status == "authorized"
    await world.behave(outage=True)
    with pytest.raises(ServiceUnavailable):
        await world.payments.capture(SYSTEM, order)
    assert (await world.payments.get_payment(SYSTEM, order)).status == "authorized"
    await world.behave()
    assert (await world.payments.capture(SYSTEM, order)).status == "captured"
    assert (await world.stats())["authorizations"] == 1


def seed_for(phase: str) -> int:
    """A seed whose first request, at timeout_rate 1.0, hangs ``phase`` its effect. It mirrors
    the simulator's draws (error, timeout, phase); the tests check the counters, so a change
    in that order fails loudly rather than testing the other phase."""
    for seed in range(1000):
        rng = random.Random(seed)
        rng.random(), rng.random()
        if (rng.random() < 0.5) == (phase == "after"):
            return seed
    raise AssertionError("no seed")


async def wait_for(predicate: Any, attempts: int = 500) -> None:
    for _ in range(attempts):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the provider never got there")


@pytest.mark.parametrize(("phase", "requests"), [("before", 3), ("after", 2)])
async def test_a_timeout_is_settled_by_asking_about_the_key(tmp_path, phase, requests):
    async with running(tmp_path, payment_timeout_seconds=0.25) as w:
        order = new_order()
        await w.behave(timeout_rate=1.0, seed=seed_for(phase))
        # As a saga step calls it: the saga is the layer that retries, so the client makes
        # one attempt and payments settles the timeout itself.
        with retried_above():
            call = asyncio.create_task(w.authorize(order))
        # Heal the provider while the client still waits: the lookup then answers.
        await wait_for(lambda: _timeouts(w, phase))
        await w.behave()
        payment = await call
        assert payment.status == "authorized"
        stats = await w.stats()
        # before: POST (hung, no effect), lookup 404, POST again; after: POST, lookup found.
        assert (stats["requests"], stats["authorizations"]) == (requests, 1)
        assert (await w.authorize(order)).provider_intent_id == payment.provider_intent_id


async def _timeouts(w: World, phase: str) -> bool:
    return (await w.stats())[f"timeouts_{phase}_effect"] == 1  # type: ignore[no-any-return]


async def test_a_provider_that_never_answers_is_unavailable_and_never_charges_twice(tmp_path):
    async with running(tmp_path, payment_timeout_seconds=0.2) as w:
        order = new_order()
        await w.behave(timeout_rate=1.0, seed=seed_for("after"))
        with pytest.raises(ServiceUnavailable):
            await w.authorize(order)  # the authorization took effect, but nobody could tell
        with pytest.raises(NotFound):
            await w.payments.get_payment(SYSTEM, order)
        await w.behave()
        payment = await w.authorize(order)
        await w.behave(timeout_rate=1.0, seed=seed_for("after"))
        with pytest.raises(ServiceUnavailable):
            await w.payments.capture(SYSTEM, order)
        await w.behave()
        assert (await w.payments.capture(SYSTEM, order)).status == "captured"
        stats = await w.stats()
        assert stats["timeouts_after_effect"] >= 2
        assert (stats["authorizations"], stats["captures"]) == (1, 1)
        assert stats["totals"]["EUR"]["captured"] == payment.amount_minor
        await w.assert_clean_audit()


async def test_a_lost_answer_is_reconciled_by_asking_the_provider(tmp_path):
    async with running(tmp_path, payment_timeout_seconds=0.2) as w:
        voided, captured = new_order(), new_order()
        await w.authorize(voided)
        await w.authorize(captured)
        await w.behave(timeout_rate=1.0, seed=seed_for("after"))
        with pytest.raises(ServiceUnavailable):
            await w.payments.void(SYSTEM, voided)  # voided at the provider; we cannot tell
        await w.behave(timeout_rate=1.0, seed=seed_for("after"))
        with pytest.raises(ServiceUnavailable):
            await w.payments.capture(SYSTEM, captured)  # captured; we cannot tell
        await w.behave()
        assert set((await w.payments.audit(SYSTEM)).provider_mismatches) == {captured, voided}
        # The provider refuses the opposite step; payments asks it and books what happened.
        with pytest.raises(Conflict):
            await w.payments.capture(SYSTEM, voided)
        assert (await w.payments.get_payment(SYSTEM, voided)).status == "voided"
        undone = await w.payments.void(SYSTEM, captured)
        assert undone is not None and (undone.status, undone.refunded_minor) == ("refunded", 5000)
        stats = await w.stats()
        assert (stats["captures"], stats["voids"], stats["refunds"]) == (1, 1, 1)
        await w.assert_clean_audit()


async def test_void_releases_an_authorization_whose_answer_was_lost(tmp_path):
    async with running(tmp_path, payment_timeout_seconds=0.2) as w:
        order = new_order()
        await w.behave(timeout_rate=1.0, seed=seed_for("after"))
        with pytest.raises(ServiceUnavailable):
            await w.authorize(order)  # the card is held, but payments could not tell
        await w.behave()
        assert (await w.payments.audit(SYSTEM)).open_authorizations == [order]
        assert await w.payments.void(SYSTEM, order) is None  # the saga's compensation
        held = await w.admin.get(
            "/v1/payment_intents", params={"idempotency_key": f"colony-{order}-authorize"}
        )
        assert held.json()["status"] == "voided"
        assert await w.payments.void(SYSTEM, order) is None
        assert (await w.stats())["voids"] == 1
        assert (await w.payments.audit(SYSTEM)).open_authorizations == []
        with pytest.raises(Conflict):
            await w.authorize(order)  # the provider would replay a stale "authorized"


# Answers not to be believed (OWASP API10)


@pytest.mark.parametrize("bad", BAD_ANSWERS)
async def test_a_badly_answered_authorization_is_never_believed_and_the_void_releases_it(wary, bad):
    order = new_order()
    await wary.behave(**{f"{bad}_rate": 1.0})
    with pytest.raises(ServiceUnavailable):
        await wary.authorize(order)  # held at the provider; nothing here believes it
    with pytest.raises(NotFound):
        await wary.payments.get_payment(SYSTEM, order)
    if bad != "wrong_amount":
        # Asked while its every answer is bad, the provider cannot say what it holds: the
        # void waits (the saga retries it) rather than take "nothing" for an answer.
        with pytest.raises(ServiceUnavailable):
            await wary.payments.void(SYSTEM, order)
    await wary.behave()
    if bad != "wrong_amount":
        assert (await wary.payments.audit(SYSTEM)).open_authorizations == [order]
    assert await wary.payments.void(SYSTEM, order) is None
    assert (await intent_of(wary, order))["status"] == "voided"
    stats = await wary.stats()
    assert (stats["authorizations"], stats["voids"], stats["captures"]) == (1, 1, 0)
    assert stats["bad_answers"] >= 1
    audit = await wary.payments.audit(SYSTEM)
    assert audit.open_authorizations == [] and audit.provider_mismatches == []


@pytest.mark.parametrize("bad", BAD_ANSWERS)
async def test_badly_answered_capture_void_and_refund_are_settled_by_asking_again(wary, bad):
    captured, voided = new_order(), new_order()
    await wary.authorize(captured)
    await wary.authorize(voided)
    await wary.behave(**{f"{bad}_rate": 1.0})
    with pytest.raises(ServiceUnavailable):
        await wary.payments.capture(SYSTEM, captured)
    with pytest.raises(ServiceUnavailable):
        await wary.payments.void(SYSTEM, voided)
    # Nothing believed, nothing booked: the provider acted, and is asked again below.
    assert (await wary.payments.get_payment(SYSTEM, captured)).status == "authorized"
    assert (await wary.payments.get_payment(SYSTEM, voided)).status == "authorized"
    assert await wary.payments.ledger(SYSTEM, captured) == []
    await wary.behave()
    assert (await wary.payments.capture(SYSTEM, captured)).status == "captured"
    after_void = await wary.payments.void(SYSTEM, voided)
    assert after_void is not None and after_void.status == "voided"

    await wary.behave(**{f"{bad}_rate": 1.0})
    with pytest.raises(ServiceUnavailable):
        await wary.payments.refund(SYSTEM, captured, None, "damaged")
    assert (await wary.payments.get_payment(SYSTEM, captured)).refunded_minor == 0
    await wary.behave()
    refunded = await wary.payments.refund(SYSTEM, captured, None, "damaged")
    assert (refunded.status, refunded.refunded_minor) == ("refunded", 5000)
    assert await wary.balances(captured) == {}
    stats = await wary.stats()
    assert (stats["captures"], stats["voids"], stats["refunds"]) == (1, 1, 1)
    await wary.assert_clean_audit()


async def test_the_audit_does_not_believe_bad_answers_either(wary):
    await wary.captured(new_order())
    await wary.behave(garbage_rate=1.0)
    with pytest.raises(ServiceUnavailable):
        await wary.payments.audit(SYSTEM)


async def test_the_audit_reports_money_left_at_the_provider_without_a_payment(wary):
    order = new_order()
    await wary.behave(garbage_rate=1.0)
    with pytest.raises(ServiceUnavailable):
        await wary.authorize(order)
    await wary.behave()
    audit = await wary.payments.audit(SYSTEM)
    assert (audit.open_authorizations, audit.provider_mismatches) == ([order], [])
    # Captured behind the marketplace's back: money taken, and no payment to show for it.
    held = await intent_of(wary, order)
    behind = await wary.admin.post(
        f"/v1/payment_intents/{held['id']}/capture", json={}, headers={"idempotency-key": "x"}
    )
    assert behind.status_code == 200, behind.text
    audit = await wary.payments.audit(SYSTEM)
    assert (audit.open_authorizations, audit.provider_mismatches) == ([], [order])
    assert await wary.payments.void(SYSTEM, order) is None  # the compensation refunds it
    refunded = await intent_of(wary, order)
    assert (refunded["status"], refunded["refunded_amount"]) == ("refunded", 5000)
    audit = await wary.payments.audit(SYSTEM)
    assert (audit.open_authorizations, audit.provider_mismatches) == ([], [])


async def test_an_authorization_cut_short_is_found_and_voided(tmp_path):
    """Noted before it is sent: an authorize that never hears back for any reason (here its
    caller gave up) leaves the void something to ask about."""
    async with running(tmp_path, payment_timeout_seconds=2.0) as w:
        order = new_order()
        await w.behave(latency={"p50_ms": 400, "p99_ms": 400})
        call = asyncio.create_task(w.authorize(order))
        await wait_for(lambda: _requests(w, 1))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        # The provider goes on with the request after the caller left.
        await wait_for(lambda: _authorizations(w, 1))
        await w.behave()
        assert (await w.payments.audit(SYSTEM)).open_authorizations == [order]
        assert await w.payments.void(SYSTEM, order) is None
        assert (await intent_of(w, order))["status"] == "voided"


async def test_an_authorization_certainly_not_made_leaves_nothing_to_settle(local):
    order = new_order()
    await local.behave(outage=True)
    with pytest.raises(ServiceUnavailable):
        await local.authorize(order)
    await local.behave()
    assert (await local.payments.audit(SYSTEM)).open_authorizations == []
    before = (await local.stats())["requests"]
    assert await local.payments.void(SYSTEM, order) is None
    assert (await local.stats())["requests"] == before  # the void had nothing to ask about


async def _requests(w: World, count: int) -> bool:
    return (await w.stats())["requests"] >= count  # type: ignore[no-any-return]


async def _authorizations(w: World, count: int) -> bool:
    return (await w.stats())["authorizations"] == count  # type: ignore[no-any-return]


# Void and refund


async def test_void_releases_an_authorization(world):
    order = new_order()
    await world.authorize(order)
    voided = await world.payments.void(SYSTEM, order)
    assert voided is not None and voided.status == "voided"
    assert await world.payments.void(SYSTEM, order) == voided
    with pytest.raises(Conflict):
        await world.payments.capture(SYSTEM, order)
    assert await world.payments.void(SYSTEM, new_order()) is None
    assert (await world.stats())["voids"] == 1
    assert await world.payments.ledger(SYSTEM, order) == []
    audit = await world.payments.audit(SYSTEM)
    assert order not in audit.open_authorizations and audit.by_order[order] == 0


async def test_void_of_a_captured_payment_refunds_it(local):
    order = new_order()
    await local.captured(order)
    voided = await local.payments.void(SYSTEM, order)
    assert voided is not None
    assert (voided.status, voided.refunded_minor) == ("refunded", 5000)
    assert await local.balances(order) == {}
    await local.assert_clean_audit()


async def test_refund_per_seller_then_the_rest(world):
    order = new_order()
    await world.captured(order)
    own = await world.payments.refund(SELLER_A, order, "seller-a", "out of stock")
    # The seller is answered with their own part, all of it refunded; the order is half.
    assert (own.status, own.refunded_minor, own.seller_shares) == (
        "refunded",
        3000,
        {"seller-a": 3000},
    )
    first = await world.payments.get_payment(SYSTEM, order)
    assert (first.status, first.refunded_minor) == ("partially_refunded", 3000)
    assert await world.balances(order) == {"buyer:buyer-1": -2000, "escrow": 2000}
    assert await world.payments.refund(SYSTEM, order, "seller-a", "again") == first
    assert (await world.stats())["refunds"] == 1

    with pytest.raises(Forbidden):
        await world.payments.refund(SELLER_B, order, "seller-a", "not mine")
    with pytest.raises(Forbidden):
        await world.payments.refund(BUYER, order, None, "buyers cannot")

    rest = await world.payments.refund(SYSTEM, order, None, "order cancelled")
    assert (rest.status, rest.refunded_minor) == ("refunded", 5000)
    assert await world.balances(order) == {}
    assert await world.payments.refund(SYSTEM, order, None, "again") == rest
    stats = await world.stats()
    assert stats["refunds"] == 2 and stats["totals"]["EUR"]["net_charged"] == 0
    kinds = [e.kind for e in await world.payments.ledger(SYSTEM, order)]
    assert kinds.count("refund") == 4  # two transactions, buyer and escrow legs each
    await world.assert_clean_audit()


async def test_a_refund_before_capture_is_refused(local):
    order = new_order()
    await local.authorize(order)
    with pytest.raises(Conflict):
        await local.payments.refund(SYSTEM, order, None, "too early")


async def test_a_failed_refund_is_finished_with_the_same_key(local):
    order = new_order()
    await local.captured(order)
    await local.behave(outage=True)
    with pytest.raises(ServiceUnavailable):
        await local.payments.refund(SYSTEM, order, "seller-a", "damaged")
    await local.behave()
    # Another seller's refund first finishes the pending one, then does its own.
    after = await local.payments.refund(SYSTEM, order, "seller-b", "late")
    assert (after.status, after.refunded_minor) == ("refunded", 5000)
    assert (await local.stats())["refunds"] == 2
    await local.assert_clean_audit()


# Payouts


def delivered(order_id: str, seller_id: str, status: str = "delivered") -> ShipmentStatusChanged:
    return ShipmentStatusChanged(
        shipment_id=f"shp-{order_id}-{seller_id}",
        order_id=order_id,
        seller_id=seller_id,
        buyer_id=BUYER.id,
        status=status,  # type: ignore[arg-type]
        at=utc_now_iso(),
    )


async def test_delivery_pays_the_seller_out_once_and_a_refund_takes_it_back(local):
    order = new_order()
    await local.captured(
        order, amount_minor=3005, seller_shares={"seller-a": 1005, "seller-b": 2000}
    )
    await local.service.on_shipment_status_changed(delivered(order, "seller-a", "in_transit"))
    assert (await local.payments.get_payment(SYSTEM, order)).paid_out == {}
    for _ in range(2):
        await local.service.on_shipment_status_changed(delivered(order, "seller-a"))
    payment = await local.payments.get_payment(SELLER_A, order)
    assert payment.paid_out == {"seller-a": 905}  # the fee, 10 % of 1005, rounds down to 100
    assert await local.balances(order) == {
        "buyer:buyer-1": -3005,
        "escrow": 2000,
        "seller:seller-a": 905,
        "marketplace:fees": 100,
    }
    refunded = await local.payments.refund(SYSTEM, order, None, "returned")
    assert refunded.status == "refunded"
    assert await local.balances(order) == {}
    await local.service.on_shipment_status_changed(delivered(order, "seller-b"))
    assert (await local.payments.get_payment(SYSTEM, order)).paid_out == {
        "seller-a": 905,
        "seller-b": 0,
    }
    await local.assert_clean_audit()


async def test_payout_of_a_partly_refunded_seller_and_a_refund_after_it(local):
    order = new_order()
    await local.captured(order)
    await local.payments.refund(SYSTEM, order, "seller-b", "lost")
    await local.service.on_shipment_status_changed(delivered(order, "seller-a"))
    await local.service.on_shipment_status_changed(delivered(order, "seller-b"))
    assert await local.balances(order) == {
        "buyer:buyer-1": -3000,
        "seller:seller-a": 2700,
        "marketplace:fees": 300,
    }
    await local.payments.refund(SELLER_A, order, "seller-a", "returned")
    assert await local.balances(order) == {}
    await local.assert_clean_audit()


async def test_the_consumer_applies_a_redelivered_message_once(local):
    order = new_order()
    await local.captured(order)
    event = delivered(order, "seller-b")
    message = Message(
        id="msg-1",
        topic=ShipmentStatusChanged.topic,
        key=order,
        payload=msgspec.Raw(msgspec.json.encode(event)),
        created_at=utc_now_iso(),
        source="delivery",
    )
    consumer = local.runtime.consumers["payments"]
    await consumer.deliver(message)
    await consumer.deliver(message)
    await consumer.deliver(msgspec.structs.replace(message, id="msg-2"))  # same seller again
    payouts = {
        e.transaction_id for e in await local.payments.ledger(SYSTEM, order) if e.kind == "payout"
    }
    assert len(payouts) == 1
    assert await local.balances(order) == {
        "buyer:buyer-1": -5000,
        "escrow": 3000,
        "seller:seller-b": 1800,
        "marketplace:fees": 200,
    }


# Audit


async def test_the_audit_catches_what_is_wrong(local):
    order, other, third = new_order(), new_order(), new_order()
    await local.captured(order)
    await local.authorize(other)
    await local.assert_clean_audit()
    audit = await local.payments.audit(ADMIN)
    assert (audit.payments, audit.ledger_transactions) == (2, 1)
    assert audit.open_authorizations == [other]
    assert audit.by_order == {order: 5000, other: 0}

    db = local.runtime.databases["payments"]
    await db.execute(
        "INSERT INTO ledger_entries (transaction_id, account, amount_minor, currency, order_id,"
        " kind, at) VALUES ('tx-bad', 'escrow', 7, 'EUR', ?, 'payout', ?)",
        (order, utc_now_iso()),
    )
    # Money moved at the provider behind our back: a refund with a key of its own.
    captured = await local.captured(third)
    refund = await local.admin.post(
        f"/v1/payment_intents/{captured.provider_intent_id}/refunds",
        json={"amount": 100},
        headers={"idempotency-key": "rogue"},
    )
    assert refund.status_code == 201, refund.text
    # A second captured intent for the same order that we recorded instead of ours.
    rogue = await local.admin.post(
        "/v1/payment_intents",
        json={"amount": 5000, "currency": "EUR", "card_number": APPROVED},
        headers={"idempotency-key": "rogue-authorize"},
    )
    rogue_id = rogue.json()["id"]
    await local.admin.post(
        f"/v1/payment_intents/{rogue_id}/capture", json={}, headers={"idempotency-key": "rc"}
    )
    await local.payments.capture(SYSTEM, other)
    await db.execute(
        "UPDATE payments SET provider_intent_id = ? WHERE order_id = ?", (rogue_id, other)
    )

    audit = await local.payments.audit(SYSTEM)
    assert audit.ledger_sum_minor == 7
    assert audit.unbalanced_transactions == ["tx-bad"]
    assert audit.escrow_mismatches == [order]
    assert audit.provider_mismatches == [third]
    assert audit.double_charges == [other]


async def test_the_audit_fails_rather_than_guess_when_the_provider_is_down(local):
    await local.captured(new_order())
    await local.behave(outage=True)
    with pytest.raises(ServiceUnavailable):
        await local.payments.audit(SYSTEM)


# Who may do what, and bad input


async def test_only_the_system_moves_money_and_only_parties_see_it(world):
    order = new_order()
    with pytest.raises(Forbidden):
        await world.payments.authorize(BUYER, order, BUYER.id, 5000, "EUR", APPROVED, SHARES)
    await world.authorize(order)
    for call in (world.payments.capture, world.payments.void):
        with pytest.raises(Forbidden):
            await call(BUYER, order)
        with pytest.raises(Forbidden):
            await call(ADMIN, order)
    assert (await world.payments.get_payment(BUYER, order)).order_id == order
    part = await world.payments.get_payment(SELLER_B, order)
    assert (part.order_id, part.seller_shares, part.amount_minor) == (
        order,
        {"seller-b": 2000},
        2000,
    )
    assert (part.buyer_id, part.card_last4, part.provider_intent_id) == (None, None, None)
    assert (await world.payments.get_payment(ADMIN, order)).order_id == order
    stranger = Actor(id="someone-else", role="buyer")
    with pytest.raises(Forbidden):
        await world.payments.get_payment(stranger, order)
    with pytest.raises(Forbidden):
        await world.payments.ledger(stranger, order)
    with pytest.raises(Forbidden):
        await world.payments.audit(BUYER)
    with pytest.raises(NotFound):
        await world.payments.get_payment(SYSTEM, new_order())


@pytest.mark.parametrize(
    "fields",
    [
        {"amount_minor": 0},
        {"amount_minor": -500},
        {"currency": "XXX"},
        {"currency": "eur"},
        {"card_number": "1234"},
        {"seller_shares": {"seller-a": 4000}},
        {"seller_shares": {}},
        {"seller_shares": {"seller-a": 6000, "seller-b": -1000}},
        {"buyer_id": ""},
    ],
)
async def test_bad_input_never_reaches_the_provider(world, fields):
    with pytest.raises(InvalidInput):
        await world.authorize(new_order(), **fields)
    assert (await world.stats())["requests"] == 0


async def test_an_outage_opens_the_breaker_and_spares_the_provider(tmp_path):
    breaker = {
        "breaker.consecutive_failures": 3,
        "breaker.open_seconds": 30.0,
        "breaker.max_open_seconds": 30.0,
    }
    async with running(tmp_path, resilience={"payment-provider": breaker}) as w:
        await w.behave(outage=True)
        for _ in range(20):
            with pytest.raises(ServiceUnavailable):
                await w.authorize(new_order())
        requests = (await w.stats())["requests"]
        # Two attempts per call until the third failure in a row opens the breaker; then
        # nothing reaches the provider until it has had time to recover.
        assert requests <= 4
        assert w.runtime.resilience.dependencies["payment-provider"].state == "open"


async def test_the_audit_is_counted_apart_at_the_provider(tmp_path):
    async with running(tmp_path) as w:
        await w.authorize(new_order())
        before = await w.stats()
        await w.payments.audit(SYSTEM)
        after = await w.stats()
        made = after["requests"] - before["requests"]
        assert before["audit_requests"] == 0
        assert made >= 1 and after["audit_requests"] == made
