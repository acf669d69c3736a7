"""The whole marketplace as one process per service (and per replica) on this machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from colony.composition import SERVICE_NAMES
from colony.distributed.nats_server import running_nats_server
from colony.distributed.plan import GATEWAY, ServiceProcess, plan, write_topology
from colony.distributed.supervisor import RestartPolicy, Supervisor
from colony.platform.config import Settings


@dataclass
class DistributedMarketplace:
    url: str
    nats_url: str
    processes: list[ServiceProcess]
    supervisor: Supervisor


@contextlib.asynccontextmanager
async def running_distributed(
    settings: Settings, replicas: dict[str, int]
) -> AsyncIterator[DistributedMarketplace]:
    """Start every service's processes, then the gateway, each supervised; events over the
    NATS at ``settings.nats_url``, or over a nats-server started here when there is none."""
    async with contextlib.AsyncExitStack() as stack:
        nats_url = settings.nats_url or await stack.enter_async_context(
            running_nats_server(settings.data_dir)
        )
        processes = plan(SERVICE_NAMES, replicas, settings.port)
        topology = write_topology(processes, settings.data_dir / "topology.toml")
        supervisor = Supervisor(
            {
                "COLONY_TOPOLOGY_FILE": str(topology.resolve()),
                "COLONY_NATS_URL": nats_url,
                "COLONY_DATA_DIR": str(settings.data_dir.resolve()),
            },
            RestartPolicy(initial_seconds=settings.restart_backoff_seconds),
        )
        stack.push_async_callback(supervisor.stop)
        services = [p for p in processes if p.service != GATEWAY]
        children = [await supervisor.start(spec) for spec in services]
        await asyncio.gather(*(supervisor.wait_ready(child) for child in children))
        # The gateway last: it asks identity for its signing keys as it starts.
        gateways = [await supervisor.start(p) for p in processes if p.service == GATEWAY]
        await asyncio.gather(*(supervisor.wait_ready(child) for child in gateways))
        yield DistributedMarketplace(
            f"http://{settings.host}:{settings.port}", nats_url, processes, supervisor
        )
