"""Colony's buyer traffic for Locust: the same mix and weights as ``colony load``.

    pip install locust      # not a dependency of Colony
    locust -f bench/locustfile.py --host http://127.0.0.1:8080
    locust -f bench/locustfile.py --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 60s

It lives in ``bench/``, beside the other benchmark tools, so ``make test`` lints it, rather than
at the repository root where Locust would find it without ``-f`` (one flag is a small price for
keeping the root to the project's own files). It needs only Locust, not Colony: teams often run
Locust from an image of its own.

Each Locust user is one buyer with an account of its own (registered on start), so its checkouts
never share a cart with another user's. The kinds and weights are those of ``colony load``:
browse 30, search 30, product 20, cart 10, checkout 10 (``tests/load_tests`` keeps the two
equal). One difference matters when reading the numbers: Locust's users are a closed loop, each
waiting for an answer before its next request, so a slow server slows the load and hides its
own latency (coordinated omission). ``colony load`` sends on a schedule and measures from it;
use it for latency, and this file where Locust is the tool a team already runs.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from locust import FastHttpUser, between, task

MIX = {"browse": 30, "search": 30, "product": 20, "cart": 10, "checkout": 10}
CARD = "4242424242424242"
ADDRESS = {
    "name": "Locust Buyer",
    "line1": "1 Arrival Street",
    "city": "Berlin",
    "postcode": "10115",
    "country": "DE",
}
PASSWORD = "colony-locust-buyer"
_WORD = re.compile(r"[a-z]{4,}")
_SORTS = ("relevance", "relevance", "price_asc", "price_desc", "newest")


class Buyer(FastHttpUser):
    """A buyer browsing, searching, looking at products, filling a cart and checking out."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.categories: list[str] = []
        self.words: list[str] = []
        self.listings: list[dict[str, Any]] = []
        self.in_stock: set[str] = set()
        email = f"locust-{uuid.uuid4().hex[:12]}@colony.example"
        account = {"email": email, "password": PASSWORD, "name": "Locust buyer", "role": "buyer"}
        self.client.post("/api/v1/accounts", json=account, name="/api/v1/accounts")
        with self.client.post(
            "/api/v1/tokens",
            json={"email": email, "password": PASSWORD},
            name="/api/v1/tokens",
            catch_response=True,
        ) as response:
            token = _json(response).get("access_token")
            if not token:
                response.failure(f"cannot sign in: {response.status_code}")
        self.headers = {"authorization": f"Bearer {token}"}
        categories = self.client.get("/api/v1/categories", name="/api/v1/categories")
        if categories.status_code == 200:
            self.categories = [c["slug"] for c in categories.json()]
        found = self.client.get(
            "/api/v1/listings?page_size=100&sort=newest", name="/api/v1/listings (set-up)"
        )
        if found.status_code == 200:
            self.listings = found.json()["items"]
            titles = " ".join(item["title"] for item in self.listings).lower()
            self.words = sorted(set(_WORD.findall(titles)))

    @task(MIX["browse"])
    def browse(self) -> None:
        self.client.get("/api/v1/categories", name="browse: /api/v1/categories")

    @task(MIX["search"])
    def search(self) -> None:
        params: dict[str, Any] = {"page_size": 20, "sort": self.rng.choice(_SORTS)}
        if self.words:
            params["q"] = self.rng.choice(self.words)
        if self.categories and self.rng.random() < 0.3:
            params["category"] = self.rng.choice(self.categories)
        self.client.get("/api/v1/listings", params=params, name="search: /api/v1/listings")

    @task(MIX["product"])
    def product(self) -> None:
        if not self.listings:
            return
        listing_id = self.rng.choice(self.listings)["id"]
        response = self.client.get(
            f"/api/v1/listings/{listing_id}", name="product: /api/v1/listings/{id}"
        )
        if response.status_code == 200:
            available = _json(response).get("available")
            if available:
                self.in_stock.add(listing_id)
            elif available == 0:
                self.in_stock.discard(listing_id)

    @task(MIX["cart"])
    def cart(self) -> None:
        listing_id = self._pick(1)
        if not listing_id:
            return
        added = self._add(listing_id[0], "cart: /api/v1/cart/items")
        if added:
            self.client.get("/api/v1/cart", headers=self.headers, name="cart: /api/v1/cart")

    @task(MIX["checkout"])
    def checkout(self) -> None:
        chosen = self._pick(self.rng.randint(1, 3))
        if not chosen:
            return
        self.client.delete("/api/v1/cart", headers=self.headers, name="checkout: empty the cart")
        added = [self._add(listing_id, "checkout: /api/v1/cart/items") for listing_id in chosen]
        if not any(added):
            return
        with self.client.post(
            "/api/v1/orders",
            json={"card_number": CARD, "address": ADDRESS},
            headers={**self.headers, "idempotency-key": str(uuid.uuid4())},
            name="checkout: /api/v1/orders",
            catch_response=True,
        ) as response:
            if response.status_code in (201, 202) and _json(response).get("order_id"):
                response.success()
            else:
                response.failure(f"{response.status_code}: no order acknowledged")

    def _pick(self, count: int) -> list[str]:
        pool = sorted(self.in_stock) or [item["id"] for item in self.listings]
        return self.rng.sample(pool, min(count, len(pool))) if pool else []

    def _add(self, listing_id: str, name: str) -> bool:
        with self.client.post(
            "/api/v1/cart/items",
            json={"listing_id": listing_id, "quantity": 1},
            headers=self.headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code in (404, 409):  # sold out or delisted: not the server's fault
                self.in_stock.discard(listing_id)
                response.success()
                return False
            return bool(response.status_code == 200)


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:  # not JSON: an error page, a proxy's answer
        return {}
    return body if isinstance(body, dict) else {}
