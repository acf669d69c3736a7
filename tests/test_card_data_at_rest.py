"""No card number at rest: after checkouts (one paid, one declined), no file of the data dir —
every service's database, its WAL, whatever tables and pages it holds — and no line of the
logs carries a full card number. The marketplace keeps what a real integration with a payment
provider keeps: the provider's intent id and the card's last four digits. (The provider's
own books are the provider's, in its own data dir.)"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from checkout_helpers import ADDRESS
from colony.payment_provider import CARD_DECLINED
from colony.platform.web.server import free_port
from test_crash_recovery import COLONY, environment, http_topology, sign_up

CARD_PAID = "5555555555554444"  # approved: the simulator approves any number not magic


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``colony up``, its log (stderr) written to ``log``; once it is ready."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [COLONY, "up", "--seed-size", "1"], env=env, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{env['COLONY_PORT']}/health/ready"
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the marketplace did not become ready")


def checkout(api: httpx.Client, buyer: dict[str, str], listing: dict[str, str], card: str) -> str:
    added = api.post(
        "/api/v1/cart/items", json={"listing_id": listing["id"], "quantity": 1}, headers=buyer
    )
    assert added.status_code == 200, added.text
    placed = api.post(
        "/api/v1/orders",
        json={"card_number": card, "address": ADDRESS},
        headers={**buyer, "idempotency-key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    return str(placed.json()["order_id"])


def ended(api: httpx.Client, buyer: dict[str, str], order_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        order = api.get(f"/api/v1/orders/{order_id}", headers=buyer).json()
        if order["status"] in ("completed", "cancelled"):
            return dict(order)
        assert time.monotonic() < deadline, order
        time.sleep(0.1)


@pytest.mark.parametrize("binding", ["inprocess", "http"])
def test_no_card_number_is_kept_in_any_database_or_log(
    binding, tmp_path, payment_provider, mail_sink
):
    topology = http_topology(tmp_path) if binding == "http" else None
    data_dir = tmp_path / "data"
    env = environment(data_dir, free_port(), payment_provider, topology)
    env["COLONY_LOG_LEVEL"] = "debug"
    log = tmp_path / "colony.log"
    process = start(env, log)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{env['COLONY_PORT']}", timeout=30)
        seller, buyer = sign_up(api, "seller"), sign_up(api, "buyer")
        draft = {"title": "Brass lamp", "category": "home-kitchen", "price_minor": 1500}
        listing = api.post("/api/v1/listings", json=draft, headers=seller).json()
        receipt = api.post(
            f"/api/v1/listings/{listing['id']}/stock/receipts",
            json={"quantity": 5},
            headers=seller,
        )
        assert receipt.status_code == 201, receipt.text
        paid = ended(api, buyer, checkout(api, buyer, listing, CARD_PAID))
        declined = ended(api, buyer, checkout(api, buyer, listing, CARD_DECLINED))
        assert (paid["status"], declined["status"]) == ("completed", "cancelled")
        assert (paid["card_last4"], declined["card_last4"]) == ("4444", "0002")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    # The provider's books, should it have been started here, are the provider's to keep.
    files = [
        path
        for path in data_dir.rglob("*")
        if path.is_file() and not path.name.startswith("payment_provider.db")
    ]
    assert any(path.name == "orders.db" for path in files)
    kept: dict[str, list[str]] = {}
    for path in [*files, log]:
        content = path.read_bytes()
        for card in (CARD_PAID, CARD_DECLINED):
            if card.encode() in content:
                kept.setdefault(card, []).append(str(path.relative_to(tmp_path)))
    assert kept == {}
    # What may be kept is kept, and found where it is: the search can see what is there.
    orders = b"".join(p.read_bytes() for p in files if p.name.startswith("orders.db"))
    assert b'"card_last4":"4444"' in orders
    assert log.stat().st_size > 0
