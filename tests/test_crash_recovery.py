"""A marketplace process killed (SIGKILL) in the middle of checkouts: after a restart every
order reaches a terminal state and ``colony verify`` finds every invariant intact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from checkout_helpers import ADDRESS
from colony.composition import SERVICE_NAMES
from colony.payment_provider import CARD_APPROVED
from colony.platform.web.server import free_port
from conftest import SMTP_PORT

COLONY = str(Path(sys.executable).parent / "colony")
ORDERS = 16


def environment(data_dir: Path, port: int, provider: str, topology: Path | None) -> dict[str, str]:
    env = {
        **os.environ,
        "COLONY_DATA_DIR": str(data_dir),
        "COLONY_PORT": str(port),
        "COLONY_LOG_LEVEL": "warning",
        "COLONY_PASSWORD_HASH_COST": "fast",
        "COLONY_PAYMENT_PROVIDER_URL": provider,
        "COLONY_SMTP_PORT": str(SMTP_PORT),
        "COLONY_MAIL_SINK_HTTP_PORT": str(free_port()),
        "COLONY_COURIER_STEP_SECONDS": "3600",
        "COLUMNS": "200",
    }
    if topology is not None:
        env["COLONY_TOPOLOGY_FILE"] = str(topology)
    return env


def http_topology(directory: Path) -> Path:
    """A topology file placing every service in ``colony up``'s own process, each served and
    called over HTTP on a port of its own."""
    topology = directory / "topology.toml"
    topology.write_text(
        "".join(
            f'[services.{name}]\nbinding = "http"\nurl = "http://127.0.0.1:{free_port()}"\n'
            for name in SERVICE_NAMES
        )
    )
    return topology


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [COLONY, "up", "--seed-size", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{env['COLONY_PORT']}/health/ready"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the marketplace did not become ready")


def sign_up(api: httpx.Client, role: str) -> dict[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
    account = {"email": email, "password": "correct horse battery", "name": "X", "role": role}
    assert api.post("/api/v1/accounts", json=account).status_code == 201
    token = api.post(
        "/api/v1/tokens", json={"email": email, "password": "correct horse battery"}
    ).json()["access_token"]
    return {"authorization": f"Bearer {token}"}


def open_orders(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "orders.db") as db:
        return int(
            db.execute(
                "SELECT count(*) FROM saga_instances WHERE status IN ('running', 'compensating')"
            ).fetchone()[0]
        )


@pytest.mark.parametrize("binding", ["inprocess", "http"])
def test_a_process_killed_mid_saga_finishes_every_order_after_restart(
    binding, tmp_path, payment_provider, mail_sink
):
    topology = http_topology(tmp_path) if binding == "http" else None
    env = environment(tmp_path / "data", free_port(), payment_provider, topology)
    process = start(env)
    provider = httpx.Client(base_url=payment_provider)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{env['COLONY_PORT']}", timeout=30)
        seller = sign_up(api, "seller")
        listings = []
        for n in range(3):
            draft = {"title": f"Crash lamp {n}", "category": "home-kitchen", "price_minor": 1500}
            listing = api.post("/api/v1/listings", json=draft, headers=seller).json()
            api.post(
                f"/api/v1/listings/{listing['id']}/stock/receipts",
                json={"quantity": 50},
                headers=seller,
            )
            listings.append(listing)
        buyers = []
        for _ in range(ORDERS):
            buyer = sign_up(api, "buyer")
            for listing in listings:
                api.post(
                    "/api/v1/cart/items",
                    json={"listing_id": listing["id"], "quantity": 1},
                    headers=buyer,
                )
            buyers.append(buyer)
        # A slow provider keeps the sagas in flight when the process dies.
        provider.put("/admin/behaviour", json={"latency": {"p50_ms": 150, "p99_ms": 400}})
        orders = []
        for buyer in buyers:
            response = api.post(
                "/api/v1/orders",
                json={"card_number": CARD_APPROVED, "address": ADDRESS},
                headers={**buyer, "idempotency-key": str(uuid.uuid4())},
            )
            assert response.status_code == 201, response.text
            orders.append((buyer, response.json()["order_id"]))
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        in_flight = open_orders(tmp_path / "data")
        assert in_flight > 0, "the kill came too late to interrupt a saga"

        process = start(env)
        deadline = time.monotonic() + 60
        for buyer, order_id in orders:
            while True:
                order = api.get(f"/api/v1/orders/{order_id}", headers=buyer).json()
                if order["status"] in ("completed", "cancelled"):
                    break
                assert time.monotonic() < deadline, order
                time.sleep(0.1)
        provider.put("/admin/behaviour", json={})
        verify = subprocess.run(
            [COLONY, "verify"], env=env, capture_output=True, text=True, timeout=120
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "VIOLATED" not in verify.stdout
        assert "stock conserved" in verify.stdout
    finally:
        provider.put("/admin/behaviour", json={})
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
