"""Colony's faults, load and invariant checks as Chaos Toolkit activities, for teams that
already run their experiments with ``chaos run`` (``deploy/chaos/*.json`` are examples).

Chaos Toolkit calls plain functions with keyword arguments from the experiment's JSON, so each
function here is a small synchronous shell over the same code ``colony faults``, ``colony
load`` and ``colony verify`` use. A *held* fault (a database outage lasts while the process
that injected it runs) cannot outlive one activity: use ``colony faults inject SPEC
--duration`` for those.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec

from colony import faults
from colony.chaos.deployment import COLONY
from colony.load import LoadConfig, run_load

DEFAULT_DATA_DIR = "var/data"
DEFAULT_URL = "http://127.0.0.1:8080"


def inject_fault(spec: str, data_dir: str = DEFAULT_DATA_DIR) -> str:
    """Action: inject the fault ``spec`` names into the topology running from ``data_dir``."""

    async def inject() -> str:
        fault = faults.fault_from_spec(spec, faults.RunningTopology.load(Path(data_dir)))
        if fault.held:
            raise faults.FaultSpecError(
                f"{spec} lasts only while its injector runs; use colony faults inject --duration"
            )
        await fault.inject()
        return fault.description

    return asyncio.run(inject())


def heal_fault(spec: str, data_dir: str = DEFAULT_DATA_DIR) -> str:
    """Action: heal it, returning once things were seen to work again."""

    async def heal() -> str:
        fault = faults.fault_from_spec(spec, faults.RunningTopology.load(Path(data_dir)))
        await fault.heal()
        return fault.description

    return asyncio.run(heal())


def heal_everything(data_dir: str = DEFAULT_DATA_DIR) -> list[str]:
    """Rollback: mend whatever any fault left; returns what could not be reached."""
    topology = faults.RunningTopology.load(Path(data_dir))
    return asyncio.run(faults.heal_everything(topology))


def generate_load(
    url: str = DEFAULT_URL, rate: float = 20.0, duration: float = 30.0, buyers: int = 40
) -> dict[str, Any]:
    """Action (run it in the background): open-loop load; returns the summary per kind."""
    config = LoadConfig(url=url, rate=rate, duration=duration, buyers=buyers)
    report = asyncio.run(run_load(config))
    return {
        "arrivals": report.arrivals,
        "ok_rate": report.ok_rate,
        "kinds": msgspec.to_builtins(report.kinds),
        "errors": report.errors,
    }


def marketplace_ready(url: str = DEFAULT_URL) -> bool:
    """Probe: the gateway answers its readiness check."""
    try:
        return httpx.get(url.rstrip("/") + "/health/ready", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def invariants_hold(data_dir: str = DEFAULT_DATA_DIR, timeout: float = 180.0) -> bool:
    """Probe: ``colony verify`` passes against the topology's databases."""
    env = {**os.environ, "COLONY_DATA_DIR": data_dir}
    result = subprocess.run(
        [COLONY, "verify"], env=env, capture_output=True, text=True, timeout=timeout
    )
    return result.returncode == 0
