"""The fault sweep (Filibuster's method): checkout, a declined and an undeliverable checkout,
a buyer's cancellation and a seller's refund, each rerun once per call between services and
per fault kind at that call, then a seeded sample of pairs; after every run the invariants
hold and the order is where its buyer would find it right. Then the interposers themselves,
and one regression test per bug the sweep found."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.chaos.interpose import (
    FAULT_KINDS,
    Fault,
    FaultInterposer,
    FaultKind,
    Interposer,
    RecordingInterposer,
    Site,
    caller_of,
    inject,
)
from colony.chaos.sweep import (
    SCENARIOS,
    Sweep,
    reason_problems,
    sample_pairs,
    sweep_settings,
)
from colony.platform.errors import ServiceUnavailable
from colony.platform.runtime.interface import callers
from colony.platform.web.problems import PROBLEM_JSON, install_problem_handlers
from conftest import settings_for

PAIRS = 8
"""Pairs of faults sampled per scenario (seeded): all of them would be hundreds of runs."""
SEED = 2021

EXPECTED_SITES = {
    "checkout": [
        "gateway->orders.place_order#1",
        "orders->cart.cart_of#1",
        "orders->catalog.get_listings#1",
        "orders->inventory.reserve#1",
        "orders->payments.authorize#1",
        "orders->delivery.create_shipments#1",
        "orders->payments.capture#1",
        "orders->inventory.commit_reservation#1",
        "orders->cart.remove_purchased#1",
    ],
    "declined": ["orders->payments.authorize#1", "orders->inventory.release_reservation#1"],
    "undeliverable": [
        "orders->delivery.create_shipments#1",
        "orders->delivery.cancel_shipments#1",
        "orders->payments.void#1",
        "orders->inventory.release_reservation#1",
    ],
    "cancellation": [
        "gateway->orders.cancel_order#1",
        "orders->delivery.cancel_shipments#1",
        "orders->payments.refund#1",
        "orders->inventory.release_reservation#1",
    ],
    "refund": ["gateway->orders.refund_order#1", "orders->payments.refund#1"],
}
"""Calls each scenario must be seen to make: a sweep that recorded nothing would pass."""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, payment_provider: str, mail_sink: Any) -> Sweep:
    workdir = tmp_path_factory.mktemp("sweep")
    return Sweep(lambda data_dir: sweep_settings(settings_for(data_dir), data_dir), workdir)


# --- the sweep ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_single_fault_and_a_sample_of_pairs_leave_the_order_right(
    sweep: Sweep, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await sweep.sweep(SCENARIOS[name], FAULT_KINDS, pairs=PAIRS, seed=SEED)
    with capsys.disabled():
        print(f"\nfault sweep: {report.summary()}")
    recorded = {str(site) for site in report.sites}
    assert set(EXPECTED_SITES[name]) <= recorded, sorted(recorded)
    assert len(report.singles) == len(report.sites) * len(FAULT_KINDS)
    assert len(report.pairs) == PAIRS
    # A single fault always fires: a run is the clean run up to its site.
    assert not [r.name for r in report.singles if r.unfired]
    assert not report.failures, f"{name}:\n{report.describe_failures()}"


# --- regression tests: one per bug the sweep found -------------------------------------------

GATEWAY_TIMEOUTS = [
    ("checkout", Fault(Site("gateway", "orders", "place_order", 1), "timeout-before")),
    ("checkout", Fault(Site("gateway", "orders", "place_order", 1), "timeout-after")),
    ("checkout", Fault(Site("orders", "cart", "cart_of", 1), "timeout-before")),
    ("checkout", Fault(Site("cart", "catalog", "get_listings", 1), "timeout-after")),
    ("checkout", Fault(Site("cart", "inventory", "availability", 1), "timeout-before")),
    ("cancellation", Fault(Site("gateway", "orders", "cancel_order", 1), "timeout-after")),
    ("refund", Fault(Site("gateway", "orders", "refund_order", 1), "timeout-before")),
]


@pytest.mark.parametrize(("name", "fault"), GATEWAY_TIMEOUTS, ids=lambda x: str(x))
async def test_a_timeout_behind_the_gateway_is_answered_503_and_the_retry_succeeds(
    sweep: Sweep, name: str, fault: Fault
) -> None:
    """Found by the sweep: a dependency's TimeoutError reached the client as a 500 ("An
    unexpected error occurred."), which tells it nothing it could do; now a 503."""
    interposer = FaultInterposer([fault])
    result = await sweep.run(SCENARIOS[name], interposer)
    assert interposer.injected == [fault]
    assert not result.problems, result.problems


async def test_the_problem_handlers_answer_a_timeout_with_a_503_problem() -> None:
    async def slow(request: Request) -> Response:
        raise TimeoutError

    app = Starlette(routes=[Route("/slow", slow)])
    install_problem_handlers(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/slow")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "try again" in response.json()["detail"]


class Outage(Interposer):
    """Every call to one method of one service fails the same way (an outage, not a blip)."""

    def __init__(self, callee: str, method: str, kind: FaultKind) -> None:
        super().__init__()
        self.target = (callee, method)
        self.kind = kind

    async def invoke(self, site: Site, call: Any) -> Any:
        if (site.callee, site.method) == self.target:
            return await inject(self.kind, site, call)
        return await call()


@pytest.mark.parametrize(
    ("callee", "method", "kind"),
    [("payments", "authorize", "unavailable"), ("delivery", "create_shipments", "timeout-before")],
)
async def test_an_outage_past_the_steps_patience_cancels_with_a_sentence(
    sweep: Sweep, callee: str, method: str, kind: FaultKind
) -> None:
    """What the buyer reads when a step gives up: a sentence, not the refused URL nor
    ``TimeoutError`` (the saga engine once showed ``describe(exc)`` of the last failure)."""
    result = await sweep.run(SCENARIOS["checkout"], Outage(callee, method, kind))
    assert result.outcome == "cancelled"
    assert not result.problems, result.problems


# --- the interposers ------------------------------------------------------------------------


class EchoApi(Protocol):
    service_name: ClassVar[str] = "echo"

    @callers("orders")
    async def echo(self, value: int) -> int: ...

    @callers("orders")
    async def fail(self) -> None: ...


class Echo:
    """A service whose calls are counted, with an attribute outside its interface."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.label = "echo service"

    async def echo(self, value: int) -> int:
        self.calls.append(value)
        return value * len(self.calls)

    async def fail(self) -> None:
        raise ServiceUnavailable("down")

    def helper(self) -> str:
        return "not an interface method"


def _proxy(interposer: Interposer) -> tuple[Any, Echo]:
    service = Echo()
    return interposer("echo", service), service


async def test_the_recorder_names_each_call_by_caller_callee_method_and_occurrence() -> None:
    recorder = RecordingInterposer({"echo": EchoApi})
    client, service = _proxy(recorder)
    assert await client.echo(1) == 1  # not armed: through, uncounted
    recorder.armed = True
    assert await client.echo(2) == 4
    assert await client.echo(3) == 9
    with pytest.raises(ServiceUnavailable):
        await client.fail()
    assert [str(s) for s in recorder.sites] == [
        "test_fault_sweep->echo.echo#1",
        "test_fault_sweep->echo.echo#2",
        "test_fault_sweep->echo.fail#1",
    ]
    assert client.label == "echo service" and client.helper() == "not an interface method"
    assert service.calls == [1, 2, 3]


async def test_the_caller_is_the_service_whose_code_made_the_call() -> None:
    recorder = RecordingInterposer({"echo": EchoApi})
    recorder.armed = True
    client, _ = _proxy(recorder)
    orders: dict[str, Any] = {"__name__": "colony.services.orders.sagas", "asyncio": asyncio}
    exec("async def step(client):\n    return await client.echo(1)", orders)
    exec("def spawn(client):\n    return asyncio.ensure_future(client.echo(3))", orders)
    platform: dict[str, Any] = {"__name__": "colony.platform.saga.engine"}
    exec("def run(client):\n    return client.echo(2)", platform)
    await orders["step"](client)
    await platform["run"](client)  # the platform passes a call on; the caller is above it
    await orders["spawn"](client)  # a call run as a task is its maker's, not the loop's
    assert [s.caller for s in recorder.sites] == ["orders", "test_fault_sweep", "orders"]
    assert caller_of(None) == "?"


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_breaks_its_site_and_no_other(kind: FaultKind) -> None:
    fault = Fault(Site("test_fault_sweep", "echo", "echo", 2), kind)
    interposer = FaultInterposer([fault], {"echo": EchoApi})
    interposer.armed = True
    client, service = _proxy(interposer)
    assert await client.echo(10) == 10
    effects = {
        "unavailable": ([10], ServiceUnavailable),
        "timeout-before": ([10], TimeoutError),
        "timeout-after": ([10, 20], TimeoutError),
        "duplicate": ([10, 20, 20], None),
    }
    calls, error = effects[kind]
    if error is None:
        assert await client.echo(20) == 60  # the second delivery's answer
    else:
        with pytest.raises(error) as raised:
            await client.echo(20)
        if kind == "unavailable":
            # Shaped like the HTTP binding's refusal, so a leak of it to a buyer shows.
            assert "http://" in str(raised.value)
    assert service.calls == calls
    await client.echo(30)
    assert service.calls == [*calls, 30]
    assert interposer.injected == [fault]


async def test_a_fault_at_a_site_never_reached_is_not_injected() -> None:
    fault = Fault(Site("test_fault_sweep", "echo", "echo", 5), "unavailable")
    interposer = FaultInterposer([fault], {"echo": EchoApi})
    interposer.armed = True
    client, _ = _proxy(interposer)
    await client.echo(1)
    assert interposer.injected == []


def test_pairs_are_drawn_reproducibly_in_the_order_their_sites_were_reached() -> None:
    sites = [Site("orders", "svc", f"m{i}", 1) for i in range(4)]
    singles = [Fault(site, kind) for site in sites for kind in FAULT_KINDS]
    drawn = sample_pairs(singles, 10, seed=7)
    assert drawn == sample_pairs(singles, 10, seed=7)
    assert drawn != sample_pairs(singles, 10, seed=8)
    assert len(set(drawn)) == 10
    assert all(sites.index(a.site) < sites.index(b.site) for a, b in drawn)
    assert len(sample_pairs(singles[:8], 1000, seed=1)) == 16  # all there are: 4 x 4


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("The card was declined (card_declined).", True),
        ("A service this order needs did not respond in time.", True),
        ("I changed my mind.", True),
        ("http://127.0.0.1:8105/rpc/authorize: ClientConnectorError: Cannot connect", False),
        ("TimeoutError", False),
        ("ServiceUnavailable('down')", False),
        ("cancelled", False),
        (None, False),
    ],
)
def test_a_reason_shown_to_a_buyer_is_a_sentence(reason: str | None, ok: bool) -> None:
    assert (not reason_problems(reason)) is ok


def test_sweep_settings_keep_the_courier_away_and_hash_passwords_cheaply(tmp_path: Path) -> None:
    settings = sweep_settings(settings_for(tmp_path), tmp_path / "run")
    assert settings.data_dir == tmp_path / "run"
    assert settings.password_hash_cost == "fast"
    assert settings.courier_step_seconds >= 600


def test_colony_chaos_sweep_runs_a_scenario_and_reports_its_count() -> None:
    from typer.testing import CliRunner

    from colony.cli.main import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["chaos", "sweep", "--scenario", "refund", "--kinds", "duplicate", "--pairs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "2 single-fault runs" in result.output and "1 pairs" in result.output
    refused = runner.invoke(app, ["chaos", "sweep", "--scenario", "everything"])
    assert refused.exit_code == 2
