"""Payments' internal RPC surface fuzzed by Schemathesis against its own document
(:func:`~colony.platform.runtime.rpc_schema.rpc_openapi`), with every check Schemathesis has,
as each caller its methods allow: orders (the system's saga steps, which move money), the
gateway acting for an admin, a buyer and a seller, and the verify tool. It passes only if the
binding and the service do what the document says: no valid call refused, no invalid one
accepted, no status, header or body the document does not declare, no 500. Without a valid
service token every operation answers 401.

Payments runs in a real runtime, served over HTTP on this machine by its binding, against the
provider simulator, with a payment in every state and two dead letters to find; Schemathesis
runs as its command, deterministically and with bounded examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import colony.services.payments
from colony.payment_provider.app import create_app
from colony.payment_provider.server import open_provider
from colony.platform.clock import utc_now_iso
from colony.platform.errors import PaymentDeclined
from colony.platform.messaging import Message
from colony.platform.messaging.consumer import list_dead_letters, record_dead_letter
from colony.platform.runtime import Runtime, ServiceDefinition, Topology
from colony.platform.runtime.rpc_schema import rpc_openapi
from colony.platform.security import Actor
from colony.platform.trust import InMemoryKeys, TokenIssuer
from colony.platform.web.problems import PROBLEM_JSON
from colony.platform.web.server import HttpServer, free_port
from colony.services.delivery.api import ShipmentStatusChanged
from colony.services.payments.api import PaymentsApi
from colony.services.payments.service import PaymentsService
from conftest import settings_for
from owasp_tests.fuzzing_rules import RPC_RULE_BOUND_OPERATIONS
from owasp_tests.schemathesis_run import run_schemathesis

MIGRATIONS = Path(colony.services.payments.__file__).parent / "migrations"
SEED = 20_250_611
"""Schemathesis's, should its generation ever be other than deterministic."""
MAX_EXAMPLES = 60
"""Per operation and phase: the whole module in about 25 s on two cores."""
RUN_TIMEOUT_SECONDS = 120
AUTHORIZE = "/rpc/authorize"
DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
"""Schemathesis's own statuses for a valid request (5xx is judged by not_a_server_error)."""
BUYER, SELLERS = "buyer-1", ["seller-a", "seller-b"]
APPROVED, DECLINED = "4242424242424242", "4000000000000002"
CALLERS: dict[str, tuple[str, Actor]] = {
    "orders": ("orders", Actor.system("orders")),
    "gateway for an admin": ("gateway", Actor(id="admin-1", role="admin")),
    "gateway for a buyer": ("gateway", Actor(id=BUYER, role="buyer")),
    "gateway for a seller": ("gateway", Actor(id=SELLERS[0], role="seller")),
    "verify": ("verify", Actor.system("verify")),
}
"""Who calls payments, and for whom: each run covers the operations that caller may call."""
ORDERS = {
    "order-authorized": [],
    "order-declined": [],
    "order-captured": ["capture"],
    "order-part-refunded": ["capture", "refund seller-a"],
    "order-refunded": ["capture", "refund"],
    "order-voided": ["void"],
    "order-of-another-buyer": ["capture"],
}
"""A payment in each state, by its order id, and the calls after its authorization."""


def config_text(dead_letters: list[str]) -> str:
    """Schemathesis's configuration: its hooks, how much to generate, and the operations a
    request valid by the document may still be refused by: with 422, for a rule of the
    service's own (``fuzzing_rules`` holds each such 422 to its rule), and with 402, an
    authorization the card's issuer declines."""
    lines = [
        'hooks = "owasp_tests.fuzzing_rules"',
        "workers = 1",
        f"seed = {SEED}",
        "request-timeout = 10",
        "[generation]",
        "deterministic = true",
        'database = "none"',
        f"max-examples = {MAX_EXAMPLES}",
        # A call whose caller's budget is spent (x-colony-deadline-ms: 0) is refused with
        # 504, as documented: the one server-side status a request alone can bring about.
        "[checks.not_a_server_error]",
        'expected-statuses = ["2xx", "3xx", "4xx", "504"]',
        # Mostly unknown ids find nothing: half the ids sent are those of the payments made
        # before the run, one in each state, and of the dead letters parked then, so the
        # calls reach the money and the replays as well.
        "[dictionaries.orders]",
        f"values = {json.dumps(list(ORDERS))}",
        "[dictionaries.sellers]",
        f"values = {json.dumps(SELLERS)}",
        "[dictionaries.dead_letters]",
        f"values = {json.dumps(dead_letters)}",
        "[parameters]",
        '"body.order_id" = { dictionary = "orders", probability = 0.5 }',
        '"body.seller_id" = { dictionary = "sellers", probability = 0.5 }',
        '"body.dead_letter_id" = { dictionary = "dead_letters", probability = 0.5 }',
    ]
    for method, path in RPC_RULE_BOUND_OPERATIONS:
        statuses = [*DEFAULT_ACCEPTED, "422", *(["402"] if path == AUTHORIZE else [])]
        accepted = ", ".join(f'"{status}"' for status in statuses)
        lines += [
            "[[operations]]",
            f'include-path = "{path}"',
            f'include-method = "{method}"',
            f"checks.positive_data_acceptance.expected-statuses = [{accepted}]",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Served:
    runtime: Runtime
    url: str
    document: dict[str, Any]
    workdir: Path

    def token(self, caller: str) -> str:
        identity, actor = CALLERS[caller]
        return self.runtime.issuer(identity).token("payments", actor)


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("rpc-fuzzed")
    async with open_provider(":memory:") as provider:
        simulator = HttpServer(create_app(provider), "127.0.0.1", free_port())
        await simulator.start()
        runtime = Runtime(
            settings_for(data_dir, payment_provider_url=simulator.url),
            [ServiceDefinition("payments", PaymentsApi, PaymentsService, MIGRATIONS)],
            Topology.local_over_http({"payments": free_port()}),
        )
        try:
            await runtime.start()
            await pay_for_every_order(runtime)
            letters = await park_dead_letters(runtime)
            document = rpc_openapi(PaymentsApi)
            workdir = data_dir / "schemathesis"
            workdir.mkdir()
            (workdir / "schemathesis.toml").write_text(config_text(letters))
            (workdir / "openapi.json").write_text(json.dumps(document))
            yield Served(runtime, runtime.servers["payments"].url, document, workdir)
        finally:
            await runtime.stop()
            await simulator.stop()


async def pay_for_every_order(runtime: Runtime) -> None:
    """Each payment of ``ORDERS``, as the orders saga makes them: through the binding."""
    payments: Any = runtime.client(PaymentsApi, caller="orders")
    system = Actor.system("orders")
    for order_id, steps in ORDERS.items():
        declined = order_id == "order-declined"
        try:
            await payments.authorize(
                system,
                order_id,
                buyer_id="buyer-2" if order_id == "order-of-another-buyer" else BUYER,
                amount_minor=5000,
                currency="EUR",
                card_number=DECLINED if declined else APPROVED,
                seller_shares={SELLERS[0]: 3000, SELLERS[1]: 2000},
            )
        except PaymentDeclined:
            assert declined
        for step in steps:
            call, _, seller = step.partition(" ")
            if call == "refund":
                await payments.refund(system, order_id, seller or None, "returned")
            else:
                await getattr(payments, call)(system, order_id)


async def park_dead_letters(runtime: Runtime) -> list[str]:
    """Two deliveries the consumer gave up on: one whose payout replays (the payment was
    captured since), one that fails again (nothing captured to pay out); their ids."""
    db = runtime.databases["payments"]
    for number, order_id in enumerate(["order-captured", "order-authorized"]):
        event = ShipmentStatusChanged(
            shipment_id=f"shipment-{number}",
            order_id=order_id,
            seller_id=SELLERS[0],
            buyer_id=BUYER,
            status="delivered",
            at=utc_now_iso(),
        )
        message = Message(
            id=f"message-{number}",
            topic=ShipmentStatusChanged.topic,
            key=order_id,
            payload=msgspec.Raw(msgspec.json.encode(event)),
            created_at=utc_now_iso(),
            source="delivery",
        )
        await record_dead_letter(db, "payments", message, "Conflict: not yet captured", 5)
    return [letter.id for letter in await list_dead_letters(db, True)]


def callable_by(document: dict[str, Any], caller: str) -> list[str]:
    """The paths ``caller`` may call, by the lists the document carries."""
    identity, actor = CALLERS[caller]
    paths = []
    for path, item in document["paths"].items():
        operation = item["post"]
        people = operation["x-callers-for-people"]
        if identity in operation["x-callers"] and (actor.role == "system" or identity in people):
            paths.append(path)
    return paths


async def fuzz(served: Served, token: str, paths: list[str]) -> tuple[int, str]:
    """Schemathesis run against the document; its exit code and its report."""
    selection = "^(" + "|".join(re.escape(path) for path in paths) + ")$"
    document = str(served.workdir / "openapi.json")
    arguments = [document, "--url", served.url, "--include-path-regex", selection]
    return await run_schemathesis(served.workdir, arguments, token, RUN_TIMEOUT_SECONDS)


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_the_rpc_surface_does_what_its_document_says(served, caller):
    paths = callable_by(served.document, caller)
    assert paths
    code, report = await fuzz(served, served.token(caller), paths)
    assert code == 0, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested[1]) == len(paths), report


async def test_every_operation_refuses_a_call_without_a_valid_token(served):
    stranger = TokenIssuer("orders", InMemoryKeys())  # a key payments does not trust
    orders = served.runtime.issuer("orders")
    tokens: dict[str, str | None] = {
        "none": None,
        "not a JWT": "not-a-token",
        "meant for another service": orders.token("inventory", Actor.system("orders")),
        "signed by an untrusted key": stranger.token("payments", Actor.system("orders")),
    }
    async with httpx.AsyncClient(base_url=served.url) as client:
        for path in served.document["paths"]:
            for why, token in tokens.items():
                headers = {} if token is None else {"authorization": f"Bearer {token}"}
                response = await client.post(path, content=b"{}", headers=headers)
                assert response.status_code == 401, (path, why, response.text)
                assert response.headers["content-type"] == PROBLEM_JSON, (path, why)
                assert response.headers["www-authenticate"] == "Bearer", (path, why)
                assert response.json()["status"] == 401


@pytest.mark.parametrize(
    ("order_id", "status"),
    # As written in the JSON: an escaped NUL; an escaped backslash, then text; both.
    [(r"order\u0000", 422), (r"order\\u0000", 404), (r"order\\\u0000", 422)],
    ids=["escaped NUL", "escaped backslash", "escaped backslash and NUL"],
)
async def test_text_holding_nul_is_refused_before_any_service_reads_it(served, order_id, status):
    """PostgreSQL's text cannot hold NUL: a NUL anywhere in the parameters is refused as
    invalid, as the gateway refuses it, not answered with a 500 by the service's database
    (a backslash written before ``u0000`` is text, and passes)."""
    body = b'{"order_id": "' + order_id.encode() + b'"}'
    headers = {"authorization": f"Bearer {served.token('gateway for an admin')}"}
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.post("/rpc/get_payment", content=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 422:
        assert "NUL" in response.json()["detail"]
