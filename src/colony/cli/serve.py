"""``colony serve NAME``: one process of the multi-process topology — a single service, or the
gateway — finding the others from the topology file or ``COLONY_<SERVICE>_URL``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from colony.composition import SERVICE_NAMES, service_definitions
from colony.distributed.plan import GATEWAY
from colony.platform.config import Settings
from colony.platform.logging import get_logger
from colony.platform.runtime import Runtime, Topology, collector

_log = get_logger("serve")


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: what a foreground process waits on to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(settings: Settings, name: str, topology_file: Path | None) -> None:
    if name != GATEWAY and name not in SERVICE_NAMES:
        raise ValueError(f"no service named {name!r}")
    placed = Topology.load(topology_file) if topology_file else Topology.from_urls(settings.urls)
    stop = stop_on_signals()
    if name == GATEWAY:
        from colony.marketplace import running_marketplace

        async with running_marketplace(settings, placed.hosting(None, SERVICE_NAMES)):
            collector.settle_after_start()
            _log.info("serving", service=name, port=settings.port)
            await stop.wait()
        return
    runtime = Runtime(settings, service_definitions(), placed.hosting(name, SERVICE_NAMES))
    await runtime.start()
    try:
        await runtime.serve(name, settings.host, settings.port)
        collector.settle_after_start()
        _log.info("serving", service=name, port=settings.port, instance=settings.instance)
        await stop.wait()
    finally:
        await runtime.stop()
