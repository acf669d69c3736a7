"""The whole marketplace as one process per service (and per replica) on this machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from colony.composition import IDENTITIES, SERVICE_NAMES
from colony.distributed.nats_server import running_nats_server
from colony.distributed.plan import (
    GATEWAY,
    SCRAPE_TARGETS_FILE,
    ServiceProcess,
    plan,
    write_scrape_targets,
    write_topology,
)
from colony.distributed.processes import PROCESSES_FILE, ProcessTable
from colony.distributed.supervisor import RestartPolicy, Supervised, Supervisor
from colony.platform.config import Settings
from colony.platform.trust import provision


@dataclass
class DistributedMarketplace:
    url: str
    nats_url: str
    processes: list[ServiceProcess]
    supervisor: Supervisor
    nats: Supervised | None = None
    """The nats-server started here, or None when ``COLONY_NATS_URL`` named one."""


@contextlib.asynccontextmanager
async def running_distributed(
    settings: Settings, replicas: dict[str, int]
) -> AsyncIterator[DistributedMarketplace]:
    """Start every service's processes, then the gateway, each supervised; events over the
    NATS at ``settings.nats_url``, or over a nats-server started (and supervised) here when
    there is none. ``processes.json`` in the data directory names them all while they run,
    and ``prometheus/targets.json`` gives Prometheus their /metrics."""
    async with contextlib.AsyncExitStack() as stack:
        table = ProcessTable(settings.data_dir / PROCESSES_FILE)
        stack.callback(table.remove)
        policy = RestartPolicy(initial_seconds=settings.restart_backoff_seconds)
        nats = None
        if settings.nats_url:
            nats_url = settings.nats_url
        else:
            nats = await stack.enter_async_context(
                running_nats_server(settings.data_dir, policy, table.write)
            )
            table.add([nats])
            nats_url = nats.spec.url
        processes = plan(SERVICE_NAMES, replicas, settings.port)
        topology = write_topology(processes, settings.data_dir / "topology.toml")
        # Prometheus scrapes what runs: the targets go when the topology stops.
        targets = write_scrape_targets(processes, settings.data_dir / SCRAPE_TARGETS_FILE)
        stack.callback(targets.unlink, missing_ok=True)
        # Every identity's key before any process starts: each signs its calls with its own.
        keys_dir = settings.keys_dir or settings.data_dir / "keys"
        provision(keys_dir, IDENTITIES)
        environment = {
            "COLONY_TOPOLOGY_FILE": str(topology.resolve()),
            "COLONY_NATS_URL": nats_url,
            "COLONY_DATA_DIR": str(settings.data_dir.resolve()),
            "COLONY_KEYS_DIR": str(keys_dir.resolve()),
            # Spans go to the console's store, in the first gateway.
            "COLONY_TRACES_URL": f"http://127.0.0.1:{settings.port}",
        }
        if settings.fault_injection:
            environment["COLONY_FAULT_INJECTION"] = "true"
        supervisor = Supervisor(environment, policy, table.write)
        stack.push_async_callback(supervisor.stop)
        services = [p for p in processes if p.service != GATEWAY]
        children = [await supervisor.start(spec) for spec in services]
        table.add(children)
        await asyncio.gather(*(supervisor.wait_ready(child) for child in children))
        # The gateway last: it asks identity for its signing keys as it starts.
        gateways = [await supervisor.start(p) for p in processes if p.service == GATEWAY]
        table.add(gateways)
        await asyncio.gather(*(supervisor.wait_ready(child) for child in gateways))
        yield DistributedMarketplace(
            f"http://{settings.host}:{settings.port}", nats_url, processes, supervisor, nats
        )
