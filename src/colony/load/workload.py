"""The mix: which kind each arrival is, and what each kind does against ``/api/v1``.

- ``browse``: the categories (``GET /categories``).
- ``search``: a full-text search for a word seen in the catalogue's titles, sometimes within a
  category or sorted by price or age (``GET /listings``).
- ``product``: one listing with its stock (``GET /listings/{id}``); what it says about stock
  keeps the load's idea of what is in stock current.
- ``cart``: a buyer adds an in-stock listing and looks at the cart (``POST /cart/items``,
  ``GET /cart``); a cart past 20 lines is abandoned (``DELETE /cart``).
- ``checkout``: a buyer empties the cart, adds 1 to 3 in-stock listings, and orders with an
  ``Idempotency-Key``, a card that the simulator approves, and an address. It is ``ok`` only
  when the order was acknowledged with its id (201 or 202); if the cart could not be filled
  no order was asked for, and it ``failed``.

Each arrival's kind is drawn from the weights; an arrival's own choices (words, listings) come
from its own random generator seeded from the run's, so one seed gives the same traffic.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import re
import uuid
from collections.abc import Mapping

import msgspec

from colony.load.buyers import Buyer, BuyerPool
from colony.load.client import SETUP_TIMEOUT_SECONDS, Answer, ApiClient
from colony.load.outcomes import Outcome

KINDS = ("browse", "search", "product", "cart", "checkout")
DEFAULT_MIX: dict[str, float] = {
    "browse": 30,
    "search": 30,
    "product": 20,
    "cart": 10,
    "checkout": 10,
}
BUYER_KINDS = frozenset({"cart", "checkout"})
LISTING_KINDS = frozenset({"product", "cart", "checkout"})
CARD = "4242424242424242"  # approved by the payment-provider simulator
ADDRESS = {
    "name": "Load Buyer",
    "line1": "1 Arrival Street",
    "city": "Berlin",
    "postcode": "10115",
    "country": "DE",
}
ABANDON_CART_LINES = 20
_DISCOVER_PAGES = 3
_DISCOVER_CONCURRENCY = 16
_SORTS = ("relevance", "relevance", "price_asc", "price_desc", "newest")
_WORD = re.compile(r"[a-z]{4,}")


class CheckoutAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """What a checkout did, for its history entry."""

    idempotency_key: str
    buyer: str
    buyer_id: str
    listings: list[str]
    posted: bool
    """Whether ``POST /orders`` was sent; if not, no order can exist."""
    order_id: str | None = None


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """How one arrival ended: the outcome of its first step that was not ok, else ok."""

    outcome: Outcome
    status: int | None = None
    error: str | None = None
    dropped: bool = False
    checkout: CheckoutAttempt | None = None


class Shop:
    """What the load knows of the marketplace: categories, search words, listings, and which
    listings it last saw in stock (and their currency: an order is in one currency)."""

    def __init__(
        self,
        categories: list[str],
        words: list[str],
        listings: dict[str, str],
        available: Mapping[str, int | None],
    ) -> None:
        self.categories = categories
        self.words = words
        self.listings = list(listings)
        self.currency = listings
        self._in_stock: list[str] = []
        self._position: dict[str, int] = {}
        for listing_id in self.listings:
            self.saw_stock(listing_id, available.get(listing_id))

    def saw_stock(self, listing_id: str, available: int | None) -> None:
        """Note what a product page said; unknown (inventory down) changes nothing."""
        if available is None or listing_id not in self.currency:
            return
        if available > 0 and listing_id not in self._position:
            self._position[listing_id] = len(self._in_stock)
            self._in_stock.append(listing_id)
        elif available <= 0 and listing_id in self._position:
            index = self._position.pop(listing_id)
            last = self._in_stock.pop()
            if last != listing_id:
                self._in_stock[index] = last
                self._position[last] = index

    def pick_in_stock(self, rng: random.Random, count: int) -> list[str]:
        """Up to ``count`` distinct listings last seen in stock, in one currency."""
        if not self._in_stock:
            return []
        first = rng.choice(self._in_stock)
        currency = self.currency[first]
        chosen = [first]
        for _ in range(4 * count):  # a few draws, not a scan of the whole catalogue
            if len(chosen) == count:
                break
            other = rng.choice(self._in_stock)
            if other not in chosen and self.currency[other] == currency:
                chosen.append(other)
        return chosen


class SetupError(Exception):
    """The marketplace cannot take this load (unreachable, empty, no buyers)."""


async def discover(client: ApiClient) -> Shop:
    """Read categories, a few pages of listings and their stock: enough to draw from."""
    categories = await client.call("GET", "/categories", within=SETUP_TIMEOUT_SECONDS)
    if not categories.ok:
        hint = "; is the marketplace up? (colony up)" if categories.status is None else ""
        raise SetupError(f"GET {client.base_url}/api/v1/categories: {categories.error}{hint}")
    listings: dict[str, str] = {}
    titles: list[str] = []
    for page in range(1, _DISCOVER_PAGES + 1):
        found = await client.call(
            "GET",
            "/listings",
            params={"page": page, "page_size": 100, "sort": "newest"},
            within=SETUP_TIMEOUT_SECONDS,
        )
        if not found.ok:
            raise SetupError(f"GET {client.base_url}/api/v1/listings: {found.error}")
        for item in found.body["items"]:
            listings[str(item["id"])] = str(item["currency"])
            titles.append(str(item["title"]))
        if len(found.body["items"]) < 100:
            break
    limit = asyncio.Semaphore(_DISCOVER_CONCURRENCY)

    async def stock(listing_id: str) -> tuple[str, int | None]:
        async with limit:
            detail = await client.call(
                "GET", f"/listings/{listing_id}", within=SETUP_TIMEOUT_SECONDS
            )
        return listing_id, detail.body.get("available") if detail.ok else None

    available = dict(await asyncio.gather(*(stock(listing_id) for listing_id in listings)))
    words = sorted({word for title in titles for word in _WORD.findall(title.lower())})
    return Shop([str(c["slug"]) for c in categories.body], words, listings, available)


class Workload:
    """Draws each arrival's kind from the mix and performs it."""

    def __init__(
        self, client: ApiClient, shop: Shop, buyers: BuyerPool, mix: Mapping[str, float]
    ) -> None:
        self.client = client
        self.shop = shop
        self.buyers = buyers
        self._kinds = [kind for kind in KINDS if mix.get(kind, 0) > 0]
        self._cumulative = list(itertools.accumulate(mix[kind] for kind in self._kinds))

    def check(self) -> None:
        """Refuse a mix this marketplace cannot serve, before any load is sent."""
        kinds = set(self._kinds)
        if kinds & LISTING_KINDS and not self.shop.listings:
            raise SetupError(
                f"{', '.join(sorted(kinds & LISTING_KINDS))} need listings, and the"
                f" marketplace at {self.client.base_url} has none (seed it: colony seed)"
            )
        if kinds & BUYER_KINDS and not len(self.buyers):
            raise SetupError(
                f"{', '.join(sorted(kinds & BUYER_KINDS))} need buyers: none of the demo"
                " buyers could sign in; register some with --buyers N"
            )

    def choose(self, rng: random.Random) -> str:
        point = rng.random() * self._cumulative[-1]
        return self._kinds[bisect.bisect_right(self._cumulative, point)]

    async def perform(self, kind: str, rng: random.Random) -> Result:
        if kind == "browse":
            return _result(await self.client.call("GET", "/categories"))
        if kind == "search":
            return await self._search(rng)
        if kind == "product":
            return await self._product(rng)
        if kind == "cart":
            return await self._cart(rng)
        if kind == "checkout":
            return await self._checkout(rng)
        raise ValueError(f"unknown kind {kind!r}")

    async def _search(self, rng: random.Random) -> Result:
        params: dict[str, str | int] = {"page_size": 20, "sort": rng.choice(_SORTS)}
        if self.shop.words:
            params["q"] = rng.choice(self.shop.words)
        if self.shop.categories and rng.random() < 0.3:
            params["category"] = rng.choice(self.shop.categories)
        return _result(await self.client.call("GET", "/listings", params=params))

    async def _product(self, rng: random.Random) -> Result:
        listing_id = rng.choice(self.shop.listings)
        answer = await self.client.call("GET", f"/listings/{listing_id}")
        if answer.ok and isinstance(answer.body, dict):
            self.shop.saw_stock(listing_id, answer.body.get("available"))
        return _result(answer)

    async def _cart(self, rng: random.Random) -> Result:
        buyer = self.buyers.any(rng)
        assert buyer is not None  # check() made sure there are buyers
        chosen = self.shop.pick_in_stock(rng, 1) or [rng.choice(self.shop.listings)]
        added = await self._add(buyer, chosen[0])
        if not added.ok:
            return _result(added)
        cart = await self.client.call("GET", "/cart", headers=buyer.headers)
        if cart.ok and len(cart.body.get("lines", ())) > ABANDON_CART_LINES:
            return _result(await self.client.call("DELETE", "/cart", headers=buyer.headers))
        return _result(cart)

    async def _checkout(self, rng: random.Random) -> Result:
        count = rng.randint(1, 3)
        key = str(uuid.uuid4())  # unique across runs: a repeated key would replay an old order
        buyer = self.buyers.take(rng)
        if buyer is None:
            return Result(outcome="failed", error="dropped: no free buyer", dropped=True)
        try:
            return await self._check_out(buyer, key, self.shop.pick_in_stock(rng, count))
        finally:
            self.buyers.release(buyer)

    async def _check_out(self, buyer: Buyer, key: str, chosen: list[str]) -> Result:
        def attempt(
            added: list[str], posted: bool = False, order_id: str | None = None
        ) -> CheckoutAttempt:
            return CheckoutAttempt(
                idempotency_key=key,
                buyer=buyer.email,
                buyer_id=buyer.id,
                listings=added,
                posted=posted,
                order_id=order_id,
            )

        if not chosen:
            return Result(outcome="failed", error="nothing in stock", checkout=attempt([]))
        emptied = await self.client.call("DELETE", "/cart", headers=buyer.headers)
        if not emptied.ok:
            return _not_ordered(emptied, attempt([]))
        added: list[str] = []
        for listing_id in chosen:
            answer = await self._add(buyer, listing_id)
            if answer.ok:
                added.append(listing_id)
            elif answer.status in (404, 409):  # sold out or delisted since we looked
                self.shop.saw_stock(listing_id, 0)
            else:
                return _not_ordered(answer, attempt(added))
        if not added:
            return Result(outcome="failed", error="nothing in stock", checkout=attempt([]))
        order = await self.client.call(
            "POST",
            "/orders",
            body={"card_number": CARD, "address": ADDRESS},
            headers={**buyer.headers, "idempotency-key": key},
        )
        order_id = order.body.get("order_id") if isinstance(order.body, dict) else None
        if order.ok and order.status in (201, 202) and order_id:
            return Result(
                outcome="ok", status=order.status, checkout=attempt(added, True, str(order_id))
            )
        if order.ok:  # acknowledged, but not as an order we could find again
            return Result(
                outcome="unknown",
                status=order.status,
                error=f"{order.status} without an order_id",
                checkout=attempt(added, True),
            )
        return Result(
            outcome=order.outcome,
            status=order.status,
            error=order.error,
            checkout=attempt(added, True),
        )

    async def _add(self, buyer: Buyer, listing_id: str) -> Answer:
        return await self.client.call(
            "POST",
            "/cart/items",
            body={"listing_id": listing_id, "quantity": 1},
            headers=buyer.headers,
        )


def _result(answer: Answer) -> Result:
    return Result(outcome=answer.outcome, status=answer.status, error=answer.error)


def _not_ordered(answer: Answer, attempt: CheckoutAttempt) -> Result:
    # Whatever became of the cart, no order was asked for: the checkout failed for certain.
    return Result(
        outcome="failed", status=answer.status, error=f"cart: {answer.error}", checkout=attempt
    )
