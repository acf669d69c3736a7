"""Every service answers for its own outbox, consumer, dead letters and sagas through its
endpoint (``/platform/<method>``), so operators' tools never open another service's database;
the answers are for the operator's commands and for an admin through the gateway, nobody
else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import httpx
import msgspec
import pytest

from colony.platform.errors import Forbidden, NotFound
from colony.platform.ids import new_id
from colony.platform.messaging import Consumer, Message, Outbox
from colony.platform.messaging.consumer import record_dead_letter
from colony.platform.runtime.http_binding import HttpClientFactory, rpc_app
from colony.platform.runtime.inprocess_binding import guarded
from colony.platform.runtime.interface import callers
from colony.platform.runtime.operations import OperationsApi, ServiceOperations
from colony.platform.saga import SAGA_MIGRATIONS
from colony.platform.security import Actor
from colony.platform.storage.migrations import migrate
from colony.platform.trust import InMemoryKeys, TokenIssuer, TokenVerifier
from colony.platform.web.server import HttpServer, free_port
from messaging_support import Deposited, open_db

KEYS = InMemoryKeys()
ADMIN = Actor(id="admin-1", role="admin")
BUYER = Actor(id="buyer-1", role="buyer")


class Ledger:
    service_name: ClassVar[str] = "ledger"

    @callers("orders")
    async def balance(self) -> int:
        return 0


async def deposited_to_ledger(db: Any, outbox: Outbox, amount: int) -> None:
    async with db.transaction():
        await outbox.add(Deposited(account="a", amount=amount), key="a")


@pytest.fixture
async def ledger(tmp_path: Path) -> Any:
    db = await open_db(tmp_path, "ledger")

    async def fails(event: Deposited) -> None:
        raise RuntimeError("the ledger is closed")

    consumer = Consumer("ledger", db, {Deposited: fails})
    operations = ServiceOperations("ledger", db, consumer)
    yield db, consumer, operations
    await db.close()


def token(identity: str, actor: Actor | None, audience: str = "ledger") -> str:
    return TokenIssuer(identity, KEYS).token(audience, actor)


async def ask(operations: ServiceOperations, method: str, body: dict[str, Any], bearer: str | None):
    app = rpc_app(Ledger, Ledger(), TokenVerifier("ledger", KEYS), operations=operations)
    headers = {"authorization": f"Bearer {bearer}"} if bearer is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
        return await client.post(f"/platform/{method}", json=body, headers=headers)


async def test_the_outbox_is_read_by_its_service_and_reports_what_waits(ledger) -> None:
    db, _, operations = ledger
    outbox = Outbox(db, "test")
    await deposited_to_ledger(db, outbox, 5)
    await deposited_to_ledger(db, outbox, 7)
    state = await operations.outbox(Actor.system("verify"), stale_after_seconds=3600)
    assert (state.service, state.pending, state.stale) == ("ledger", 2, 0)
    assert state.oldest_pending_seconds is not None and 0 <= state.oldest_pending_seconds < 60
    await asyncio.sleep(0.05)
    assert (await operations.outbox(Actor.system("verify"), stale_after_seconds=0.01)).stale == 2
    await db.execute("UPDATE outbox SET published_at = created_at")
    empty = await operations.outbox(Actor.system("verify"))
    assert (empty.pending, empty.stale, empty.oldest_pending_seconds) == (0, 0, None)


async def test_over_http_the_operators_and_an_admin_are_answered(ledger) -> None:
    _, _, operations = ledger
    for identity, actor in (
        ("verify", Actor.system("verify")),
        ("cli", Actor.system("cli")),
        ("gateway", ADMIN),
    ):
        answer = await ask(operations, "outbox", {}, token(identity, actor))
        assert answer.status_code == 200, answer.text
        assert answer.json()["service"] == "ledger"


@pytest.mark.parametrize(
    ("identity", "actor", "status"),
    [
        ("orders", Actor.system("orders"), 403),  # a service is not an operator
        ("gateway", BUYER, 403),  # a person who is not an admin
        ("cli", Actor.system("verify"), 403),  # the system, as someone else
        ("verify", ADMIN, 403),  # only the gateway acts for people
    ],
)
async def test_anyone_else_is_refused(ledger, identity: str, actor: Actor, status: int) -> None:
    _, _, operations = ledger
    answer = await ask(operations, "dead_letters", {}, token(identity, actor))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_without_a_token_or_with_another_services_token_nothing_is_told(ledger) -> None:
    _, _, operations = ledger
    assert (await ask(operations, "outbox", {}, None)).status_code == 401
    elsewhere = token("verify", Actor.system("verify"), audience="payments")
    assert (await ask(operations, "outbox", {}, elsewhere)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"stale_after_seconds": -1},
        {"stale_after_seconds": "soon"},
        {"stale_after_seconds": 1e9},
        {"service": "orders"},
    ],
)
async def test_bad_parameters_are_a_4xx_problem(ledger, body: dict[str, Any]) -> None:
    _, _, operations = ledger
    answer = await ask(operations, "outbox", body, token("verify", Actor.system("verify")))
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def deposited_message() -> Message:
    """A message the ledger's failing consumer would have dead-lettered."""
    return Message(
        id=new_id(),
        topic="test.deposited",
        key="a",
        payload=msgspec.Raw(b'{"account":"a","amount":3}'),
        created_at="2026-01-01T00:00:00+00:00",
        source="test",
    )


async def test_a_dead_letter_is_listed_shown_and_replayed_over_http(ledger) -> None:
    db, _, operations = ledger
    message = deposited_message()
    await record_dead_letter(db, "ledger", message, "RuntimeError: the ledger is closed", 5)
    port = free_port()
    app = rpc_app(Ledger, Ledger(), TokenVerifier("ledger", KEYS), operations=operations)
    server = HttpServer(app, "127.0.0.1", port)
    await server.start()
    factory = HttpClientFactory()
    try:
        client = factory.client(
            OperationsApi,
            [f"http://127.0.0.1:{port}"],
            TokenIssuer("cli", KEYS),
            "ledger",
            audience="ledger",
            prefix="/platform/",
        )
        operator = Actor.system("cli")
        (letter,) = await client.dead_letters(operator)
        assert (letter.topic, letter.attempts, letter.message.id) == (
            "test.deposited",
            5,
            message.id,
        )
        assert (await client.dead_letter(operator, letter.id)).error.startswith("RuntimeError")
        with pytest.raises(NotFound):
            await client.dead_letter(operator, "no-such-letter")
        # The handler still fails: the letter stays, one attempt more.
        assert await client.replay(operator, letter.id) is False
        (again,) = await client.dead_letters(operator)
        assert again.attempts == 6
        ledger[1]._routes["test.deposited"] = (Deposited, _accept)  # the ledger reopens
        assert await client.replay(operator, letter.id) is True
        assert await client.dead_letters(operator) == []
        assert len(await client.dead_letters(operator, include_replayed=True)) == 1
    finally:
        await factory.close()
        await server.stop()


async def _accept(event: Deposited) -> None:
    return None


async def test_in_process_the_same_list_is_checked(ledger) -> None:
    _, _, operations = ledger
    assert (
        await guarded(OperationsApi, operations, "verify").outbox(Actor.system("verify"))
    ).pending == 0
    with pytest.raises(Forbidden):
        await guarded(OperationsApi, operations, "orders").outbox(Actor.system("orders"))
    with pytest.raises(Forbidden):
        await guarded(OperationsApi, operations, "gateway").dead_letters(BUYER)


# --- consumers and sagas --------------------------------------------------------------------


async def test_the_consumer_reports_its_topics_open_letters_and_broker_backlog(ledger) -> None:
    db, consumer, _ = ledger

    async def pending() -> dict[tuple[str, str], int]:
        return {("ledger", "ledger-test-deposited"): 4, ("other", "other-durable"): 9}

    operations = ServiceOperations("ledger", db, consumer, jetstream_pending=pending)
    message = deposited_message()
    await record_dead_letter(db, "ledger", message, "RuntimeError: closed", 5)
    state = await operations.consumers(ADMIN)
    assert (state.consumer, state.topics, state.dead_letters_open) == (
        "ledger",
        ["test.deposited"],
        1,
    )
    assert state.jetstream_pending == {"ledger-test-deposited": 4}  # its own durables alone
    # In-process delivery keeps no backlog to report; a service without a consumer has none.
    assert (
        await ServiceOperations("ledger", db, consumer).consumers(ADMIN)
    ).jetstream_pending is None
    quiet = await ServiceOperations("quiet", db, None, jetstream_pending=pending).consumers(ADMIN)
    assert (quiet.consumer, quiet.topics, quiet.jetstream_pending) == (None, [], None)


async def saga_row(db: Any, saga_id: str, status: str, created_at: str, **columns: Any) -> None:
    values = {
        "id": saga_id,
        "kind": "checkout",
        "status": status,
        "step": 2,
        "state": b"{}",
        "deadline_at": "2026-01-01T00:10:00+00:00",
        "next_attempt_at": created_at,
        "created_at": created_at,
        "updated_at": created_at,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    await db.execute(
        f"INSERT INTO saga_instances ({names}) VALUES ({marks})", tuple(values.values())
    )


@pytest.fixture
async def with_sagas(ledger) -> Any:
    db, consumer, _ = ledger
    await migrate(db, "saga", SAGA_MIGRATIONS)
    await saga_row(db, "order-1", "completed", "2026-01-01T00:00:01+00:00")
    await saga_row(
        db,
        "order-2",
        "cancelled",
        "2026-01-01T00:00:02+00:00",
        reason="The card was declined.",
        failed_step="authorize_payment",
        attempts=3,
    )
    await saga_row(db, "order-3", "running", "2026-01-01T00:00:03+00:00", lease_owner="orders-1")
    await saga_row(db, "order-2:cancellation:7", "compensating", "2026-01-01T00:00:04+00:00")
    return ServiceOperations("orders", db, consumer)


async def test_sagas_are_listed_newest_first_by_status_with_counts(with_sagas) -> None:
    operations = with_sagas
    every = await operations.sagas(ADMIN)
    assert [s.id for s in every.sagas] == [
        "order-2:cancellation:7",
        "order-3",
        "order-2",
        "order-1",
    ]
    assert every.counts == {"running": 1, "compensating": 1, "completed": 1, "cancelled": 1}
    assert every.service == "orders" and every.as_of
    cancelled = await operations.sagas(Actor.system("cli"), status="cancelled")
    (row,) = cancelled.sagas
    assert (row.id, row.reason, row.failed_step, row.attempts) == (
        "order-2",
        "The card was declined.",
        "authorize_payment",
        3,
    )
    assert cancelled.counts == every.counts  # the counts are of all, not of those listed
    assert [s.id for s in (await operations.sagas(ADMIN, limit=1)).sagas] == [
        "order-2:cancellation:7"
    ]
    one = await operations.saga(ADMIN, "order-3")
    assert (one.status, one.lease_owner, one.kind, one.step) == (
        "running",
        "orders-1",
        "checkout",
        2,
    )
    with pytest.raises(NotFound):
        await operations.saga(ADMIN, "no-such-saga")


async def test_a_service_without_sagas_answers_none(ledger) -> None:
    _, _, operations = ledger
    listed = await operations.sagas(ADMIN, status="running")
    assert (listed.sagas, listed.counts) == ([], {})
    with pytest.raises(NotFound):
        await operations.saga(ADMIN, "order-1")


async def test_sagas_are_for_operators_alone(with_sagas) -> None:
    operations = with_sagas
    with pytest.raises(Forbidden):
        await guarded(OperationsApi, operations, "gateway").sagas(BUYER)
    with pytest.raises(Forbidden):
        await guarded(OperationsApi, operations, "orders").saga(Actor.system("orders"), "order-1")
    with pytest.raises(Forbidden):
        await operations.consumers(BUYER)
    answer = await ask(operations, "sagas", {}, token("gateway", BUYER))
    assert answer.status_code == 403, answer.text


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("sagas", {"status": "stuck"}),
        ("sagas", {"limit": 0}),
        ("sagas", {"limit": 10_000}),
        ("sagas", {"limit": "all"}),
        ("saga", {}),
        ("saga", {"saga_id": ""}),
        ("saga", {"saga_id": "x" * 300}),
        ("consumers", {"service": "orders"}),
    ],
)
async def test_bad_saga_and_consumer_questions_are_a_4xx_problem(
    with_sagas, method: str, body: dict[str, Any]
) -> None:
    answer = await ask(with_sagas, method, body, token("gateway", ADMIN))
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_over_http_an_admin_reads_sagas_through_the_gateway(with_sagas) -> None:
    answer = await ask(with_sagas, "sagas", {"status": "running"}, token("gateway", ADMIN))
    assert answer.status_code == 200, answer.text
    assert [s["id"] for s in answer.json()["sagas"]] == ["order-3"]
    one = await ask(with_sagas, "saga", {"saga_id": "order-2"}, token("cli", Actor.system("cli")))
    assert one.status_code == 200 and one.json()["failed_step"] == "authorize_payment"
    missing = await ask(with_sagas, "saga", {"saga_id": "nope"}, token("gateway", ADMIN))
    assert missing.status_code == 404
