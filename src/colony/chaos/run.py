"""One chaos run: load, one fault injected at a set time and healed, then the proof.

The run drives the marketplace with open-loop load (:mod:`colony.load`), injects the fault
``fault_at`` seconds in, heals it ``fault_for`` seconds later, lets the load run out, and waits
for the system to settle. Then it checks what "nothing lost" means:

- every order acknowledged with 201/202 exists and has ended (completed or cancelled), and how
  long after the heal the last one ended;
- ``colony verify`` passes (stock, money, orders, outboxes, dead letters); it is also run while
  the fault is on, and any violation it reports then that the final check does not is a false
  alarm;
- throughput before, during and after the fault, and how long it took to be back to 90 % of
  what it was before; the provider's requests per order; why orders were cancelled.

An ``unknown`` checkout (timed out: it may or may not have happened) needs no check of its own:
if it happened, its order is among those every-order-ends and verify check (no order left
open, none charged that does not exist, none charged twice).
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from colony.chaos.deployment import Deployment
from colony.faults import RunningTopology, fault_from_spec, heal_everything
from colony.load import DEMO_PASSWORD, LOAD_BUYER_PASSWORD, LoadConfig, LoadReport, run_load
from colony.load.buyers import DEMO_BUYERS

TERMINAL = ("completed", "cancelled")
# Reasons a buyer reads when the machinery, not the order, failed (see the saga engine).
MACHINERY_REASONS = (
    "A service this order needs did not respond in time.",
    "The checkout ran out of time.",
)
UNCHECKED = 3
"""``colony verify``'s exit code when it could not check (neither pass nor violation)."""
CHAOS_MIX = {"browse": 20.0, "search": 20.0, "product": 20.0, "cart": 10.0, "checkout": 30.0}


THEN = " then "


class ChaosConfig(msgspec.Struct, frozen=True, kw_only=True):
    fault: str
    """One fault's spec, or several joined by " then ": each in turn for ``fault_for``
    seconds (e.g. the provider slow, then down)."""
    rate: float = 20.0
    """Arrivals a second (all kinds); ``CHAOS_MIX`` makes 30 % of them checkouts."""
    duration: float = 60.0
    fault_at: float = 20.0
    fault_for: float = 15.0
    settle_within: float = 60.0
    """Seconds after the load for every acknowledged order to end."""
    seed: int = 1
    buyers: int = 60
    """Buyer accounts; each has one checkout in flight at most."""
    verify_during: bool = True

    def __post_init__(self) -> None:
        for name in ("rate", "duration", "fault_for", "settle_within"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0")
        if self.fault_at < 0 or self.fault_at + self.fault_for * len(self.phases) > self.duration:
            raise ValueError("the fault must start at 0 or later and heal before the load ends")
        if self.buyers < 0:
            raise ValueError("buyers must be 0 or more")

    @property
    def phases(self) -> list[str]:
        return [part.strip() for part in self.fault.split(THEN)]


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    detail: str


class Orders(msgspec.Struct, frozen=True, kw_only=True):
    acknowledged: int
    completed: int
    cancelled: int
    unended: list[str]
    missing: list[str]
    unknown_outcomes: int
    cancel_reasons: dict[str, int]
    last_ended_after_heal_s: float | None
    """When the last order placed before the heal ended (its last update, on the orders
    service's clock), in seconds after the heal; None when they all ended before it."""


class Throughput(msgspec.Struct, frozen=True, kw_only=True):
    before: float
    during: float
    after: float
    """Answers a second (ok), in each phase."""
    recovered_after_heal_s: float | None
    """Seconds from the heal until throughput was back to 90 % of ``before`` (3 s mean)."""
    seconds_below_90: int
    """Seconds from the injection on whose 3 s mean was below 90 % of ``before``."""
    checkout_p99_during_ms: float | None
    checkout_p99_after_ejection_ms: float | None
    """Checkouts due from 2 s after the injection to the heal: once a silent replica is out."""


class ChaosReport(msgspec.Struct, frozen=True, kw_only=True):
    config: ChaosConfig
    fault: str
    url: str
    injected_at_s: float
    healed_at_s: float
    heal_took_s: float
    throughput: Throughput
    orders: Orders
    provider_requests: int | None
    provider_requests_per_order: float | None
    verify_ok: bool
    verify_output: str
    verify_during: list[bool]
    """Each ``colony verify`` run while the fault was on: passed or not."""
    false_alarms: int
    breakers_opened: dict[str, list[str]]
    """Seen open (or half-open) while the fault was on, by process: its dependencies'."""
    checks: list[Check]
    load: LoadReport

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


Progress = Callable[[str], None]


async def run_chaos(
    config: ChaosConfig, deployment: Deployment, progress: Progress | None = None
) -> ChaosReport:
    """One run against ``deployment`` (which it leaves running, healed)."""
    say = progress or (lambda _: None)
    topology = RunningTopology.load(deployment.data_dir)
    phases = [fault_from_spec(spec, topology) for spec in config.phases]
    description = "; then ".join(fault.description for fault in phases)
    provider_before = await _provider_requests(deployment.provider_url)
    load_config = LoadConfig(
        url=deployment.url,
        rate=config.rate,
        duration=config.duration,
        mix=dict(CHAOS_MIX),
        seed=config.seed,
        buyers=config.buyers,
        timeout=10.0,
    )
    began = asyncio.Event()
    started = time.monotonic()

    def on_progress(task: str, done: int, total: int) -> None:
        if task == "load" and not began.is_set():
            nonlocal started
            started = time.monotonic()  # second 0 of the load's timeline
            began.set()

    load = asyncio.create_task(run_load(load_config, on_progress))
    timing: dict[str, float] = {}
    during: list[bool] = []
    opened: dict[str, set[str]] = {}

    async def inject_and_heal() -> None:
        waiting = asyncio.create_task(began.wait())
        await asyncio.wait([waiting, load], return_when=asyncio.FIRST_COMPLETED)
        if not began.is_set():
            await load  # it failed to start: raise why
        await asyncio.sleep(config.fault_at)
        timing["injected"] = time.monotonic() - started
        watching = asyncio.create_task(_watch_breakers(topology, opened))
        checking = None
        for index, fault in enumerate(phases):
            say(f"injecting {fault.description}")
            phase_began = time.monotonic()
            async with fault.injected():
                # Started while the fault is on; it may finish after the heal (an audit that
                # asks a slow provider takes its time), and must not stretch the fault's window.
                if checking is None and config.verify_during:
                    checking = asyncio.create_task(asyncio.to_thread(deployment.verify))
                left = config.fault_for - (time.monotonic() - phase_began)
                await asyncio.sleep(max(0.0, left))
                say("healing")
                if index == len(phases) - 1:
                    timing["heal_began"] = time.monotonic() - started
                    timing["heal_wall"] = time.time()
        timing["healed"] = time.monotonic() - started
        watching.cancel()
        if checking is not None:
            result = await checking
            # 3: it could not read a database (the fault may be that): no verdict.
            if result.returncode != UNCHECKED:
                during.append(result.returncode == 0)

    try:
        await inject_and_heal()
        report = await load
    finally:
        if not load.done():
            load.cancel()
        await heal_everything(topology)
    injected = timing["injected"]
    healed = timing["heal_began"]
    say("waiting for every order to end")
    orders = await _orders(
        deployment.url, report, healed, timing["heal_wall"], config.settle_within
    )
    say("colony verify")
    final = await asyncio.to_thread(deployment.verify)
    provider_after = await _provider_requests(deployment.provider_url)
    provider = None
    if provider_before is not None and provider_after is not None:
        provider = provider_after - provider_before
    posted = sum(1 for c in report.checkouts if c.posted)
    throughput = _throughput(report, injected, healed)
    false_alarms = sum(1 for ok in during if not ok) if final.returncode == 0 else 0
    checks = [
        Check(
            name="acknowledged orders exist",
            ok=not orders.missing,
            detail=f"{orders.acknowledged} acknowledged, {len(orders.missing)} missing",
        ),
        Check(
            name="every order ended",
            ok=not orders.unended,
            detail=f"{len(orders.unended)} still open after {config.settle_within:g} s",
        ),
        Check(
            name="ended within 30 s of the heal",
            ok=orders.last_ended_after_heal_s is None or orders.last_ended_after_heal_s <= 30,
            detail=_seconds(orders.last_ended_after_heal_s),
        ),
        Check(
            name="colony verify",
            ok=final.returncode == 0,
            detail="passed" if final.returncode == 0 else _violations(final.stdout),
        ),
        Check(
            name="no false alarm from verify under load",
            ok=false_alarms == 0,
            detail=f"{len(during)} run(s) during the fault, {false_alarms} false alarm(s)",
        ),
    ]
    return ChaosReport(
        config=config,
        fault=description,
        url=deployment.url,
        injected_at_s=round(injected, 3),
        healed_at_s=round(timing["healed"], 3),
        heal_took_s=round(timing["healed"] - timing["heal_began"], 3),
        throughput=throughput,
        orders=orders,
        provider_requests=provider,
        provider_requests_per_order=round(provider / posted, 3) if provider and posted else None,
        verify_ok=final.returncode == 0,
        verify_output=final.stdout[-4000:] + final.stderr[-2000:],
        verify_during=during,
        false_alarms=false_alarms,
        breakers_opened={name: sorted(deps) for name, deps in sorted(opened.items())},
        checks=checks,
        load=report,
    )


async def _watch_breakers(topology: RunningTopology, opened: dict[str, set[str]]) -> None:
    """Every half second, each process's dependencies (``/admin/dependencies``): which
    breakers the fault opened, as evidence that they did."""
    async with httpx.AsyncClient(timeout=0.5) as client:
        while True:
            topology.refresh()
            for name, process in topology.processes.items():
                if not process.url.startswith("http") or process.pid is None:
                    continue
                try:
                    response = await client.get(process.url + "/admin/dependencies")
                    dependencies = response.json() if response.status_code == 200 else []
                except (httpx.HTTPError, ValueError):
                    continue  # down or paused: the fault may be that
                for dependency in dependencies:
                    if dependency["state"] != "closed":
                        opened.setdefault(name, set()).add(dependency["name"])
            await asyncio.sleep(0.5)


async def _provider_requests(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url + "/admin/stats")
            stats = response.json()
            # The audits colony verify makes are checking, not paying: left out.
            return int(stats["requests"]) - int(stats.get("audit_requests", 0))
    except (httpx.HTTPError, KeyError, ValueError):
        return None


async def _orders(
    url: str, report: LoadReport, healed: float, heal_wall: float, within: float
) -> Orders:
    acknowledged = [c for c in report.checkouts if c.outcome == "ok" and c.order_id]
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        tokens = await _tokens(client, {c.buyer for c in acknowledged})
        open_orders = {c.order_id: c.buyer for c in acknowledged if c.order_id}
        ended: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        deadline = time.monotonic() + within
        while open_orders and time.monotonic() < deadline:
            for order_id, buyer in list(open_orders.items()):
                response = await client.get(
                    f"/api/v1/orders/{order_id}",
                    headers={"authorization": f"Bearer {tokens.get(buyer, '')}"},
                )
                if response.status_code == 404:
                    missing.append(order_id)
                    del open_orders[order_id]
                elif response.status_code == 200 and response.json()["status"] in TERMINAL:
                    ended[order_id] = response.json()
                    del open_orders[order_id]
            if open_orders:
                await asyncio.sleep(0.5)
    statuses = Counter(order["status"] for order in ended.values())
    cancelled = [order for order in ended.values() if order["status"] == "cancelled"]
    reasons = Counter(order.get("cancel_reason") or "?" for order in cancelled)
    before_heal = {c.order_id for c in acknowledged if c.due_s < healed}
    last_ended = max(
        (
            datetime.datetime.fromisoformat(order["updated_at"]).timestamp() - heal_wall
            for order_id, order in ended.items()
            if order_id in before_heal
        ),
        default=None,
    )
    return Orders(
        acknowledged=len(acknowledged),
        completed=statuses["completed"],
        cancelled=statuses["cancelled"],
        unended=sorted(open_orders),
        missing=sorted(missing),
        unknown_outcomes=sum(1 for c in report.checkouts if c.outcome == "unknown"),
        cancel_reasons=dict(reasons.most_common()),
        last_ended_after_heal_s=(
            None if last_ended is None or last_ended <= 0 else round(last_ended, 3)
        ),
    )


async def _tokens(client: httpx.AsyncClient, buyers: set[str]) -> dict[str, str]:
    """A token for each buyer, asking again for a while: the system has just been through
    a fault, and a sign-in it refuses now is not what this run checks."""

    async def one(email: str) -> tuple[str, str]:
        password = DEMO_PASSWORD if email in DEMO_BUYERS else LOAD_BUYER_PASSWORD
        problem = ""
        for attempt in range(20):
            try:
                response = await client.post(
                    "/api/v1/tokens", json={"email": email, "password": password}
                )
                if response.status_code in (200, 201):
                    return email, str(response.json()["access_token"])
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        raise RuntimeError(f"{email} could not sign in to check its orders: {problem}")

    return dict(await asyncio.gather(*(one(email) for email in sorted(buyers))))


def _throughput(report: LoadReport, injected: float, healed: float) -> Throughput:
    per_second = {s.second: s.completed for s in report.timeline}
    last = max(per_second, default=0)
    series = [per_second.get(i, 0) for i in range(last + 1)]

    def mean(start: float, end: float) -> float:
        values = series[max(0, int(start)) : max(0, int(end))]
        return round(statistics.fmean(values), 2) if values else 0.0

    # The first seconds warm up (buyers signing in, connections opening).
    before = mean(min(5.0, injected / 2), injected)
    end = report.config.duration if not report.config.steps else last
    rolling = [statistics.fmean(series[max(0, i - 2) : i + 1]) for i in range(len(series))]
    stop = min(len(rolling), int(end))
    below = [i for i in range(int(injected), stop) if rolling[i] < 0.9 * before]
    recovered = next(
        (i - healed for i in range(int(healed), stop) if rolling[i] >= 0.9 * before), None
    )
    checkouts_during = [
        c.latency_ms for c in report.checkouts if c.posted and injected <= c.due_s < healed
    ]
    after_ejection = [
        c.latency_ms for c in report.checkouts if c.posted and injected + 2 <= c.due_s < healed
    ]
    return Throughput(
        before=before,
        during=mean(injected, healed),
        after=mean(healed, end),
        recovered_after_heal_s=None if recovered is None else round(max(0.0, recovered), 2),
        seconds_below_90=len(below),
        checkout_p99_during_ms=_p99(checkouts_during),
        checkout_p99_after_ejection_ms=_p99(after_ejection),
    )


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


def _seconds(value: float | None) -> str:
    return "all ended before the heal" if value is None else f"last ended {value:.1f} s after"


def _violations(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if "VIOLATED" in line]
    return "; ".join(lines)[:500] or output[-500:]
