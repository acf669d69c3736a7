"""The fault sweep: a functional scenario rerun once per call it makes between services and per
way that call can fail, each time in a fresh marketplace, with the invariants checked after.

Filibuster's method (CMU, SoCC '21), built into the product: run the scenario clean and record
every call site (:mod:`colony.chaos.interpose`); then, for each site and each fault kind, run
it again with that one call broken, wait until every order the scenario made is in a terminal
state, and ask two questions: do the invariants hold (``colony verify``'s checks), and is the
order where a buyer would find it right (the scenario's own expectations: an order completed
in full, or cancelled with everything given back and a reason a person can read). Every
single fault is tried; pairs of faults are sampled with a seed.

A scenario has a ``prepare`` part, run clean (accounts, listings, stock, a cart; for a
cancellation, the checkout before it), and an ``act`` part whose calls are the sites: faults
in setting up belong to the functional tests of sign-up, listing and cart. The scenario acts
as a careful client would: an answer of 5xx is retried, a POST with the same Idempotency-Key.

Every service runs in the sweep's own process (called in-process, or over HTTP with a
topology): the sweep asks the orders service directly when its sagas have settled, and a
fresh marketplace costs a fraction of a second. The payment provider is not a site here (it
is a third party, with fault settings of its own: ``colony provider set``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from colony.chaos.interpose import (
    FAULT_KINDS,
    Fault,
    FaultInterposer,
    FaultKind,
    Interposer,
    RecordingInterposer,
    Site,
)
from colony.marketplace import Marketplace, running_marketplace
from colony.payment_provider import CARD_APPROVED, CARD_DECLINED
from colony.platform.config import Settings
from colony.platform.runtime import Topology
from colony.platform.security import Actor
from colony.services.delivery.api import UNDELIVERABLE_POSTCODE
from colony.verify import verify

SYSTEM = Actor.system("sweep")
CARD = CARD_APPROVED
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Analytical Row",
    "city": "London",
    "postcode": "N1 9GU",
    "country": "GB",
}
TERMINAL = ("completed", "cancelled")
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
EDGE_ATTEMPTS = 4
SETTLE_SECONDS = 30.0
"""How long a run waits for its orders to end before it counts one as stuck."""

# --- the gateway as a client sees it --------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body)
        return str(self.body)


class ScenarioFailed(Exception):
    """The scenario could not go on: a person using the marketplace would be stuck here."""


class Edge:
    """The gateway's API, called in-process over ASGI as an HTTP client would call it: every
    request answered 5xx is retried (a POST with its Idempotency-Key), and every 5xx answer is
    kept, since a transient fault should be answered 503 (try again), never 500."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server_errors: list[str] = []

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Answer, int]:
        """The last answer and how many attempts it took."""
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        payload = b"" if body is None else json.dumps(body).encode()
        for attempt in range(1, EDGE_ATTEMPTS + 1):
            answer = await self._send(method, path, payload, headers)
            if answer.status not in RETRIED_STATUSES:
                return answer, attempt
            self.server_errors.append(
                f"{method} {path} was answered {answer.status}: {answer.detail()}"
            )
            if attempt < EDGE_ATTEMPTS:
                await asyncio.sleep(0.05 * attempt)
        return answer, EDGE_ATTEMPTS

    async def expect(self, statuses: Iterable[int], method: str, path: str, **kwargs: Any) -> Any:
        answer, _ = await self.call(method, path, **kwargs)
        if answer.status not in tuple(statuses):
            raise ScenarioFailed(f"{method} {path} was answered {answer.status}: {answer.detail()}")
        return answer.body

    async def _send(
        self, method: str, path: str, payload: bytes, headers: dict[str, str]
    ) -> Answer:
        target, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception:
            # Starlette answers 500 to an unhandled error, then raises it for the server.
            if not status:
                raise
        raw = b"".join(chunks)
        try:
            decoded: Any = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return Answer(status, decoded)


# --- what a scenario works with -------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: str
    token: str


class Shop:
    """A fresh marketplace, the edge a scenario drives it through, and helpers for the steps
    every scenario takes."""

    def __init__(self, marketplace: Marketplace) -> None:
        self.marketplace = marketplace
        self.edge = Edge(marketplace.app)
        self.noticed: list[str] = []
        """What a person would have found wrong on the way, though the scenario went on."""
        self._accounts = 0

    async def sign_up(self, role: str) -> Account:
        self._accounts += 1
        email = f"{role}-{self._accounts}@sweep.colony.example"
        password = "correct horse battery"
        account = await self.edge.expect(
            (201,),
            "POST",
            "/api/v1/accounts",
            body={"email": email, "password": password, "name": role.title(), "role": role},
        )
        grant = await self.edge.expect(
            (200,), "POST", "/api/v1/tokens", body={"email": email, "password": password}
        )
        return Account(account["id"], grant["access_token"])

    async def list_product(
        self, seller: Account, title: str, price_minor: int, stock: int
    ) -> dict[str, Any]:
        listing: dict[str, Any] = await self.edge.expect(
            (201,),
            "POST",
            "/api/v1/listings",
            body={"title": title, "category": "home-kitchen", "price_minor": price_minor},
            token=seller.token,
        )
        await self.edge.expect(
            (201,),
            "POST",
            f"/api/v1/listings/{listing['id']}/stock/receipts",
            body={"quantity": stock},
            token=seller.token,
        )
        return listing

    async def add_to_cart(self, buyer: Account, listing: dict[str, Any], quantity: int) -> None:
        await self.edge.expect(
            (200,),
            "POST",
            "/api/v1/cart/items",
            body={"listing_id": listing["id"], "quantity": quantity},
            token=buyer.token,
        )

    async def check_out(
        self, buyer: Account, card: str = CARD, address: dict[str, str] = ADDRESS
    ) -> str:
        """Place the cart's order; a retry carries the first attempt's Idempotency-Key."""
        accepted = await self.edge.expect(
            (201,),
            "POST",
            "/api/v1/orders",
            body={"card_number": card, "address": address},
            token=buyer.token,
            idempotency_key=str(uuid.uuid4()),
        )
        return str(accepted["order_id"])

    async def settle(self, order_ids: Sequence[str], within: float = SETTLE_SECONDS) -> None:
        """Wait until no saga runs and every order is completed or cancelled (then for the
        events they caused and the read models): what a buyer would see on coming back."""
        runtime = self.marketplace.runtime
        orders = runtime.services["orders"]
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                    await orders.idle()
            await runtime.drain()
            statuses = [(await orders.get_order(SYSTEM, i)).status for i in order_ids]
            if all(status in TERMINAL for status in statuses):
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def read(self, path: str, who: Account) -> Any:
        return await self.edge.expect((200,), "GET", path, token=who.token)


# --- what a buyer would find right ----------------------------------------------------------

_INTERNALS = re.compile(
    r"https?://|\b[A-Z][A-Za-z]*(?:Error|Exception)\b|ServiceUnavailable|Traceback|\brpc/"
)


def reason_problems(reason: str | None) -> list[str]:
    """Why a reason shown to a buyer is not a plain sentence: missing, or carrying an address,
    an exception's class or a dump of one."""
    if not reason or not reason.strip():
        return ["the order was cancelled without a reason"]
    problems = []
    if _INTERNALS.search(reason):
        problems.append(f"the buyer is shown internals as the reason: {reason!r}")
    if not reason[0].isupper() or reason.rstrip()[-1] not in ".!?":
        problems.append(f"the reason shown to the buyer is not a sentence: {reason!r}")
    return problems


# --- scenarios ------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What a scenario set up: the people, the listings (with the quantity bought and the
    stock each began with), and an order placed before the part under test."""

    buyer: Account
    sellers: list[Account]
    bought: list[tuple[dict[str, Any], int, Account]]
    stock: int
    order_id: str | None = None

    def subtotal(self, seller: Account) -> int:
        return sum(x["price_minor"] * q for x, q, s in self.bought if s.id == seller.id)

    @property
    def total(self) -> int:
        return sum(x["price_minor"] * q for x, q, _ in self.bought)


@dataclass(frozen=True)
class Scenario:
    """``prepare`` runs clean; the calls ``act`` causes (until its orders settle) are the
    sites; ``expect`` lists what a person would find wrong afterwards."""

    name: str
    prepare: Callable[[Shop], Awaitable[Prepared]]
    act: Callable[[Shop, Prepared], Awaitable[list[str]]]
    expect: Callable[[Shop, Prepared, list[str]], Awaitable[list[str]]]
    description: str = ""


async def _two_sellers(shop: Shop, stock: int = 5) -> Prepared:
    first, second = await shop.sign_up("seller"), await shop.sign_up("seller")
    lamp = await shop.list_product(first, "Walnut desk lamp", 2500, stock)
    chair = await shop.list_product(first, "Oak chair", 9000, stock)
    rug = await shop.list_product(second, "Wool rug", 12000, stock)
    buyer = await shop.sign_up("buyer")
    bought = [(lamp, 2, first), (chair, 1, first), (rug, 1, second)]
    for listing, quantity, _ in bought:
        await shop.add_to_cart(buyer, listing, quantity)
    return Prepared(buyer, [first, second], bought, stock)


async def _placed(shop: Shop) -> Prepared:
    prepared = await _two_sellers(shop)
    prepared.order_id = await shop.check_out(prepared.buyer)
    await shop.settle([prepared.order_id])
    order = await shop.read(f"/api/v1/orders/{prepared.order_id}", prepared.buyer)
    if order["status"] != "completed":
        raise ScenarioFailed(f"the clean checkout ended {order['status']}: {order}")
    return prepared


async def _stock_problems(shop: Shop, prepared: Prepared, sold: bool) -> list[str]:
    problems = []
    for listing, quantity, seller in prepared.bought:
        level = await shop.read(f"/api/v1/listings/{listing['id']}/stock", seller)
        want = (prepared.stock - quantity, 0, quantity) if sold else (prepared.stock, 0, 0)
        got = (level["available"], level["reserved"], level["sold"])
        if got != want:
            problems.append(f"{listing['title']}: available/reserved/sold {got}, expected {want}")
    return problems


async def _views_problems(
    shop: Shop, prepared: Prepared, order: dict[str, Any], refunded: dict[str, int]
) -> list[str]:
    """The order's timeline tells each thing once; each seller's queue shows the order once,
    as it stands, with what that seller refunded (``refunded`` by seller id)."""
    problems = []
    told = Counter((step["type"], step["detail"]) for step in order["timeline"])
    problems += [
        f"the order's timeline shows {kind} ({detail}) {n} times"
        for (kind, detail), n in told.items()
        if n > 1
    ]
    for seller in prepared.sellers:
        queue = await shop.read("/api/v1/seller/orders", seller)
        mine = [item for item in queue["items"] if item["order_id"] == order["id"]]
        if len(mine) != 1:
            problems.append(f"a seller's queue shows the order {len(mine)} times")
            continue
        want = (order["status"], refunded.get(seller.id, 0))
        got = (mine[0]["status"], mine[0]["refunded_minor"])
        if got != want:
            problems.append(f"a seller's queue shows the order as {got}, not {want}")
    return problems


async def _checkout_act(shop: Shop, prepared: Prepared) -> list[str]:
    return [await shop.check_out(prepared.buyer)]


async def _declined_act(shop: Shop, prepared: Prepared) -> list[str]:
    return [await shop.check_out(prepared.buyer, card=CARD_DECLINED)]


async def _undeliverable_act(shop: Shop, prepared: Prepared) -> list[str]:
    nowhere = {**ADDRESS, "postcode": UNDELIVERABLE_POSTCODE}
    return [await shop.check_out(prepared.buyer, address=nowhere)]


async def _checkout_problems(
    shop: Shop, prepared: Prepared, order_id: str, refused_for: str | None
) -> list[str]:
    """A checkout ends completed in full, or cancelled with everything given back and the
    cart as it was; ``refused_for``: it must end cancelled, for a reason naming that."""
    buyer = prepared.buyer
    order = await shop.read(f"/api/v1/orders/{order_id}", buyer)
    history = await shop.read("/api/v1/orders", buyer)
    problems = []
    if history["total"] != 1:
        problems.append(f"the buyer has {history['total']} orders, not 1")
    shipments = await shop.edge.expect(
        (200, 404), "GET", f"/api/v1/orders/{order_id}/shipments", token=buyer.token
    )
    shipments = shipments if isinstance(shipments, list) else []
    payment = await shop.edge.expect(
        (200, 404), "GET", f"/api/v1/orders/{order_id}/payment", token=buyer.token
    )
    payment = payment if isinstance(payment, dict) and "order_id" in payment else None
    cart = await shop.read("/api/v1/cart", buyer)
    if order["status"] == "completed" and refused_for is None:
        if order["total_minor"] != prepared.total:
            problems.append(f"the order's total is {order['total_minor']}, not {prepared.total}")
        if (payment or {}).get("captured_minor") != prepared.total:
            problems.append(f"completed, but the payment is {payment}")
        problems += await _stock_problems(shop, prepared, sold=True)
        sellers = sorted(s["seller_id"] for s in shipments if s["status"] != "cancelled")
        if sellers != sorted(s.id for s in prepared.sellers):
            problems.append(f"completed, but the shipments are {shipments}")
        if cart["lines"]:
            problems.append("completed, but the cart still holds what was bought")
    elif order["status"] == "cancelled":
        reason = order["cancel_reason"]
        problems += reason_problems(reason)
        if refused_for and refused_for not in (reason or "").lower():
            problems.append(f"cancelled for {reason!r}, not for what was wrong ({refused_for})")
        problems += await _stock_problems(shop, prepared, sold=False)
        if payment is not None and payment["captured_minor"] != payment["refunded_minor"]:
            problems.append(f"cancelled, but the buyer paid: {payment}")
        if payment is not None and payment["status"] == "authorized":
            problems.append("cancelled, but the card's authorization is still held")
        live = [s["id"] for s in shipments if s["status"] != "cancelled"]
        if live:
            problems.append(f"cancelled, but shipments {live} are not")
        if len(cart["lines"]) != len(prepared.bought):
            problems.append("cancelled, but the cart lost what the buyer meant to buy")
    else:
        problems.append(f"the order is {order['status']} ({order['stage']})")
    return problems + await _views_problems(shop, prepared, order, {})


async def _checkout_expect(shop: Shop, prepared: Prepared, order_ids: list[str]) -> list[str]:
    return await _checkout_problems(shop, prepared, order_ids[0], None)


async def _declined_expect(shop: Shop, prepared: Prepared, order_ids: list[str]) -> list[str]:
    return await _checkout_problems(shop, prepared, order_ids[0], "declined")


async def _undeliverable_expect(shop: Shop, prepared: Prepared, order_ids: list[str]) -> list[str]:
    return await _checkout_problems(shop, prepared, order_ids[0], "deliver")


async def _cancellation_act(shop: Shop, prepared: Prepared) -> list[str]:
    assert prepared.order_id is not None
    path = f"/api/v1/orders/{prepared.order_id}/cancellation"
    answer, attempts = await shop.edge.call(
        "POST",
        path,
        body={"reason": "I changed my mind."},
        token=prepared.buyer.token,
        idempotency_key=str(uuid.uuid4()),
    )
    _repeat_answered(shop, answer, attempts, path)
    return [prepared.order_id]


def _repeat_answered(shop: Shop, answer: Answer, attempts: int, path: str) -> None:
    """A request sent again with its Idempotency-Key is answered as the first would have
    been: a conflict with the first attempt's own effect is a wrong answer (noticed), any
    other refusal stops the scenario."""
    if answer.status == 200:
        return
    if answer.status == 409 and attempts > 1:
        shop.noticed.append(
            f"POST {path} sent again with its Idempotency-Key was refused: {answer.detail()}"
        )
        return
    raise ScenarioFailed(f"POST {path} was answered {answer.status}: {answer.detail()}")


async def _cancellation_expect(shop: Shop, prepared: Prepared, order_ids: list[str]) -> list[str]:
    (order_id,) = order_ids
    buyer = prepared.buyer
    order = await shop.read(f"/api/v1/orders/{order_id}", buyer)
    if order["status"] != "cancelled":
        return [f"the buyer cancelled, but the order is {order['status']} ({order['stage']})"]
    problems = reason_problems(order["cancel_reason"])
    payment = await shop.read(f"/api/v1/orders/{order_id}/payment", buyer)
    if payment["status"] != "refunded" or payment["refunded_minor"] != prepared.total:
        problems.append(f"cancelled, but the payment is {payment['status']}: {payment}")
    if order["refunded_minor"] != prepared.total:
        problems.append(f"the order shows {order['refunded_minor']} refunded of {prepared.total}")
    problems += await _stock_problems(shop, prepared, sold=False)
    shipments = await shop.read(f"/api/v1/orders/{order_id}/shipments", buyer)
    live = [s["id"] for s in shipments if s["status"] != "cancelled"]
    if live:
        problems.append(f"cancelled, but shipments {live} are not")
    everything = {seller.id: prepared.subtotal(seller) for seller in prepared.sellers}
    return problems + await _views_problems(shop, prepared, order, everything)


async def _refund_act(shop: Shop, prepared: Prepared) -> list[str]:
    assert prepared.order_id is not None
    path = f"/api/v1/orders/{prepared.order_id}/refunds"
    answer, attempts = await shop.edge.call(
        "POST",
        path,
        body={"reason": "It arrived scratched."},
        token=prepared.sellers[0].token,
        idempotency_key=str(uuid.uuid4()),
    )
    _repeat_answered(shop, answer, attempts, path)
    return [prepared.order_id]


async def _refund_expect(shop: Shop, prepared: Prepared, order_ids: list[str]) -> list[str]:
    (order_id,) = order_ids
    buyer = prepared.buyer
    part = prepared.subtotal(prepared.sellers[0])
    order = await shop.read(f"/api/v1/orders/{order_id}", buyer)
    problems = []
    if order["status"] != "completed":
        problems.append(f"a seller refunded their part, but the order is {order['status']}")
    if order["refunded_minor"] != part:
        problems.append(f"the order shows {order['refunded_minor']} refunded, not {part}")
    payment = await shop.read(f"/api/v1/orders/{order_id}/payment", buyer)
    if payment["refunded_minor"] != part or payment["captured_minor"] != prepared.total:
        problems.append(
            f"the payment shows {payment['refunded_minor']} refunded of"
            f" {payment['captured_minor']} captured; expected {part} of {prepared.total}"
        )
    return problems + await _views_problems(shop, prepared, order, {prepared.sellers[0].id: part})


CHECKOUT = Scenario(
    "checkout",
    _two_sellers,
    _checkout_act,
    _checkout_expect,
    "a buyer checks out a cart from two sellers",
)
DECLINED = Scenario(
    "declined",
    _two_sellers,
    _declined_act,
    _declined_expect,
    "a buyer's card is declined at checkout: the stock goes back, the cart stays",
)
UNDELIVERABLE = Scenario(
    "undeliverable",
    _two_sellers,
    _undeliverable_act,
    _undeliverable_expect,
    "no courier serves the buyer's address: the payment is voided, the stock goes back",
)
CANCELLATION = Scenario(
    "cancellation",
    _placed,
    _cancellation_act,
    _cancellation_expect,
    "the buyer cancels a completed two-seller order before pickup",
)
REFUND = Scenario(
    "refund",
    _placed,
    _refund_act,
    _refund_expect,
    "one of two sellers refunds their part of a completed order",
)
SCENARIOS = {s.name: s for s in (CHECKOUT, DECLINED, UNDELIVERABLE, CANCELLATION, REFUND)}


# --- running --------------------------------------------------------------------------------


@dataclass
class RunResult:
    faults: tuple[Fault, ...]
    outcome: str
    """How the scenario's orders ended (their statuses), or ``failed`` if it could not go on."""
    problems: list[str]
    unfired: list[Fault]
    """Faults aimed at sites this run never reached."""
    seconds: float

    @property
    def name(self) -> str:
        return " + ".join(str(f) for f in self.faults) or "clean"


@dataclass
class SweepReport:
    scenario: str
    sites: list[Site]
    kinds: tuple[FaultKind, ...]
    clean: RunResult
    singles: list[RunResult] = field(default_factory=list)
    pairs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in [self.clean, *self.singles, *self.pairs] if r.problems]

    def summary(self) -> str:
        outcomes = Counter(r.outcome for r in self.singles)
        told = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        return (
            f"{self.scenario}: {len(self.sites)} call sites x {len(self.kinds)} fault kinds ="
            f" {len(self.singles)} single-fault runs ({told}); {len(self.pairs)} pairs;"
            f" {len(self.failures)} runs with violations; {self.seconds:.1f} s"
        )

    def describe_failures(self) -> str:
        return "\n".join(f"- {r.name}: " + "; ".join(r.problems) for r in self.failures)


def sweep_settings(base: Settings, data_dir: Path) -> Settings:
    """``base`` made fit for many short runs: cheap password hashes, no courier moving a
    shipment mid-run (a cancellation must find it unpicked), the saga's own retry policy."""
    return msgspec.structs.replace(
        base,
        data_dir=data_dir,
        password_hash_cost="fast",
        search_cache_seconds=0.0,
        courier_step_seconds=3600.0,
        saga_step_timeout_seconds=min(base.saga_step_timeout_seconds, 2.0),
    )


class Sweep:
    """Runs scenarios, each run in a fresh marketplace under ``workdir``, made from
    ``settings(data_dir)``; every service in this process, called in-process or, with
    ``topology``, over HTTP (a fresh topology per run, for fresh ports)."""

    def __init__(
        self,
        settings: Callable[[Path], Settings],
        workdir: Path,
        topology: Callable[[], Topology] | None = None,
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.topology = topology
        self._runs = 0

    async def run(self, scenario: Scenario, interposer: Interposer) -> RunResult:
        """One run of the scenario with ``interposer`` between the services."""
        self._runs += 1
        data_dir = self.workdir / f"{scenario.name}-{self._runs}"
        faults = tuple(
            sorted(interposer.faults.values()) if isinstance(interposer, FaultInterposer) else ()
        )
        started = time.perf_counter()
        problems: list[str] = []
        outcome = "failed"
        try:
            async with running_marketplace(
                self.settings(data_dir),
                self.topology() if self.topology else None,
                serve=False,
                interpose=interposer,
            ) as market:
                shop = Shop(market)
                outcome, problems = await self._run_in(shop, scenario, interposer)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        injected = interposer.injected if isinstance(interposer, FaultInterposer) else []
        return RunResult(
            faults=faults,
            outcome=outcome,
            problems=problems,
            unfired=[f for f in faults if f not in injected],
            seconds=time.perf_counter() - started,
        )

    async def _run_in(
        self, shop: Shop, scenario: Scenario, interposer: Interposer
    ) -> tuple[str, list[str]]:
        prepared = await scenario.prepare(shop)
        shop.edge.server_errors.clear()
        problems: list[str] = []
        order_ids: list[str] = []
        interposer.armed = True
        try:
            order_ids = await scenario.act(shop, prepared)
        except ScenarioFailed as exc:
            problems.append(str(exc))
        finally:
            # Whatever the act set going runs to its end, still under the faults.
            await shop.settle(order_ids or ([prepared.order_id] if prepared.order_id else []))
            interposer.armed = False
        outcome = "failed"
        if order_ids:
            orders = shop.marketplace.runtime.services["orders"]
            outcome = ",".join([(await orders.get_order(SYSTEM, i)).status for i in order_ids])
            try:
                problems += await scenario.expect(shop, prepared, order_ids)
            except ScenarioFailed as exc:
                problems.append(f"looking at the outcome: {exc}")
        return outcome, [
            *self._edge_problems(shop),
            *shop.noticed,
            *problems,
            *await _invariants(shop),
        ]

    @staticmethod
    def _edge_problems(shop: Shop) -> list[str]:
        return [
            f"{error} (a 500 tells a client nothing it could do; a transient fault is a 503)"
            for error in shop.edge.server_errors
            if " answered 500" in error
        ]

    async def sweep(
        self,
        scenario: Scenario,
        kinds: Sequence[FaultKind] = FAULT_KINDS,
        pairs: int = 0,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> SweepReport:
        """The clean run, then every single fault at every site it recorded, then ``pairs``
        pairs of faults drawn with ``seed`` (the first fault's site before the second's)."""
        started = time.perf_counter()
        recorder = RecordingInterposer()
        clean = await self.run(scenario, recorder)
        report = SweepReport(scenario.name, list(recorder.sites), tuple(kinds), clean)
        singles = [Fault(site, kind) for site in recorder.sites for kind in kinds]
        drawn = sample_pairs(singles, pairs, seed)
        total = len(singles) + len(drawn)
        for n, fault in enumerate(singles, 1):
            report.singles.append(await self.run(scenario, FaultInterposer([fault])))
            if progress:
                progress(n, total)
        for n, (first, second) in enumerate(drawn, len(singles) + 1):
            report.pairs.append(await self.run(scenario, FaultInterposer([first, second])))
            if progress:
                progress(n, total)
        report.seconds = time.perf_counter() - started
        return report


def sample_pairs(singles: Sequence[Fault], count: int, seed: int) -> list[tuple[Fault, Fault]]:
    """``count`` distinct pairs of faults at two different sites, in the order the sites
    were reached, drawn reproducibly from ``seed``."""
    order: dict[Site, int] = {}
    for fault in singles:
        order.setdefault(fault.site, len(order))
    candidates = [(a, b) for a in singles for b in singles if order[a.site] < order[b.site]]
    return random.Random(seed).sample(candidates, min(count, len(candidates)))


async def _invariants(shop: Shop) -> list[str]:
    checks = await verify(shop.marketplace.runtime)
    return [f"{check.name}: {v}" for check in checks for v in check.violations]
