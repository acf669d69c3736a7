"""A short ``colony chaos matrix`` in the multi-process topology (SQLite, its own NATS): every
fault family under a few seconds of load, and the invariants checked after each. Any check
that fails fails the suite, with the run's report kept for a person to read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from colony.chaos import deployment as deployments
from colony.chaos.matrix import ONE_PER_FAMILY, REPLICAS
from colony.chaos.report import save
from colony.chaos.run import MACHINERY_REASONS, ChaosConfig, run_chaos
from colony.faults import RunningTopology, heal_everything

SHORT = ChaosConfig(
    fault="kill:payments",
    rate=10.0,
    duration=12.0,
    fault_at=4.0,
    fault_for=5.0,
    settle_within=60.0,
    buyers=30,
)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[deployments.Deployment]:
    data_dir = tmp_path_factory.mktemp("chaos") / "data"
    with deployments.started(data_dir, REPLICAS, "sqlite") as running:
        yield running


@pytest.mark.parametrize("fault", ONE_PER_FAMILY)
def test_the_invariants_hold_through(
    fault: str, topology: deployments.Deployment, tmp_path: Path
) -> None:
    config = msgspec.structs.replace(SHORT, fault=fault)
    report = asyncio.run(run_chaos(config, topology))
    asyncio.run(heal_everything(RunningTopology.load(topology.data_dir)))
    _, page = save(report, tmp_path, "report")
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed, f"{fault}: {failed} (report: {page})"
    assert report.orders.acknowledged > 0
    # A restart, a pause or a short outage of a dependency costs no order.
    by_machinery = sum(report.orders.cancel_reasons.get(r, 0) for r in MACHINERY_REASONS)
    assert by_machinery == 0, f"{fault}: {report.orders.cancel_reasons} (report: {page})"
