"""Every fault family in turn against one topology: ``colony chaos matrix``.

One fault a run, the same load each time, the topology healed and quiet between runs. The
list covers the twelve families and the cases the product's bars name (a non-critical
service killed, a replica killed and paused, the provider slow then down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import httpx
import msgspec

from colony.chaos.deployment import Deployment
from colony.chaos.run import MACHINERY_REASONS, ChaosConfig, ChaosReport, run_chaos
from colony.faults import RunningTopology, heal_everything

# The replicas the matrix runs with: two of orders and of inventory, so killing or pausing one
# replica leaves another to serve.
REPLICAS = "orders=2,inventory=2"

ONE_PER_FAMILY: tuple[str, ...] = (
    "kill:payments",
    "pause:orders-1",
    "latency:orders->payments:300ms",
    "errors:gateway->orders:reset:0.3",
    "partition:orders|payments",
    "broker:kill",
    "database:payments",
    "duplicate:delivery",
    "reorder:notifications",
    "provider:outage",
    "slow-consumer:notifications:200ms",
    "skew:payments:+30s",
)
"""One fault of each of the twelve families: the short matrix the test suite runs."""

FAULTS: tuple[str, ...] = (
    *ONE_PER_FAMILY,
    # What the product's bars name besides: a replica of each replicated service killed or
    # paused, the non-critical services killed, the provider slow.
    "kill:orders-1",
    "pause:inventory-1",
    "kill:recommendations",
    "kill:notifications",
    "provider:latency:1500ms",
)


class MatrixRow(msgspec.Struct, frozen=True, kw_only=True):
    fault: str
    ok: bool
    failed_checks: list[str]
    acknowledged: int
    checkouts_failed: int
    """Checkouts answered with a failure or not answered (unknown): a buyer who could not buy."""
    cancelled: int
    cancelled_by_machinery: int
    throughput_before: float
    throughput_during: float
    recovered_after_heal_s: float | None
    checkout_p99_during_ms: float | None
    provider_requests_per_order: float | None
    last_ended_after_heal_s: float | None


async def run_matrix(
    deployment: Deployment,
    template: ChaosConfig,
    faults: Sequence[str] = FAULTS,
    on_report: Callable[[ChaosReport], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[MatrixRow]:
    rows = []
    topology = RunningTopology.load(deployment.data_dir)
    for index, fault in enumerate(faults):
        if progress:
            progress(f"[{index + 1}/{len(faults)}] {fault}")
        config = msgspec.structs.replace(template, fault=fault, seed=template.seed + index)
        report = await run_chaos(config, deployment, progress)
        if on_report:
            on_report(report)
        rows.append(row(report))
        await heal_everything(topology)
        await _quiet(deployment)
    return rows


def row(report: ChaosReport) -> MatrixRow:
    reasons = report.orders.cancel_reasons
    return MatrixRow(
        fault=report.config.fault,
        ok=report.ok,
        failed_checks=[c.name for c in report.checks if not c.ok],
        acknowledged=report.orders.acknowledged,
        checkouts_failed=_failed_checkouts(report),
        cancelled=report.orders.cancelled,
        cancelled_by_machinery=sum(reasons.get(r, 0) for r in MACHINERY_REASONS),
        throughput_before=report.throughput.before,
        throughput_during=report.throughput.during,
        recovered_after_heal_s=report.throughput.recovered_after_heal_s,
        checkout_p99_during_ms=report.throughput.checkout_p99_during_ms,
        provider_requests_per_order=report.provider_requests_per_order,
        last_ended_after_heal_s=report.orders.last_ended_after_heal_s,
    )


def _failed_checkouts(report: ChaosReport) -> int:
    checkout = report.load.kinds.get("checkout")
    return 0 if checkout is None else checkout.failed + checkout.unknown


async def _quiet(deployment: Deployment, within: float = 60.0) -> None:
    """Until the gateway is ready again (a killed process back, the broker reconnected)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(deployment.url + "/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
