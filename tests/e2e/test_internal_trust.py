"""Reaching a service's own port is not enough to be obeyed: in the topologies with one
process per service, a call that does not carry a valid token from a caller the method
allows is refused, whatever it writes in its parameters (OWASP API5, function level)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colony.cli.seed import BUYER_PASSWORD
from colony.platform.runtime.topology import Topology
from colony.platform.security import Actor
from colony.platform.trust import KeyDirectory, TokenIssuer, spiffe_id
from e2e.deployment import Deployment

FORGED_ACTOR = {"actor": {"id": "payments", "role": "system"}, "order_id": "any-order"}


def service_url(deployment: Deployment, service: str) -> str:
    if not deployment.topology.distributed:
        pytest.skip("one process: no service listens on a port of its own")
    topology = Topology.load(deployment.data_dir / "topology.toml")
    return topology.placement(service).addresses[0]


async def rpc(url: str, method: str, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{url}/rpc/{method}", json=body, headers=headers)


async def test_a_call_without_a_valid_token_is_refused(deployment: Deployment, api) -> None:
    payments = service_url(deployment, "payments")
    now = int(time.time())
    stranger = Ed25519PrivateKey.generate()
    forged = jwt.encode(
        {"iss": spiffe_id("orders"), "sub": spiffe_id("orders"), "aud": spiffe_id("payments")}
        | {"iat": now, "nbf": now, "exp": now + 60},
        stranger,
        algorithm="EdDSA",
        headers={"kid": "made-up"},
    )
    login = await api.post(
        "/api/v1/tokens", json={"email": "buyer01@colony.example", "password": BUYER_PASSWORD}
    )
    assert login.status_code == 200, login.text
    user_token = login.json()["access_token"]  # a person's token, good at the gateway
    for token in (None, "garbage", forged, user_token):
        answer = await rpc(payments, "capture", FORGED_ACTOR, token)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"


async def test_a_valid_caller_not_on_the_list_is_refused(deployment: Deployment) -> None:
    payments = service_url(deployment, "payments")
    keys = KeyDirectory(deployment.data_dir / "keys")
    as_gateway = TokenIssuer("gateway", keys).token("payments", Actor.system("gateway"))
    answer = await rpc(payments, "capture", {"order_id": "any-order"}, as_gateway)
    assert answer.status_code == 403, answer.text
    # ... and the actor cannot be slipped in among the parameters by one that is on it.
    as_orders = TokenIssuer("orders", keys).token("payments", Actor.system("orders"))
    answer = await rpc(payments, "capture", FORGED_ACTOR, as_orders)
    assert answer.status_code in (400, 422), answer.text
