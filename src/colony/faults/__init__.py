"""The fault injector: faults put into a running topology from outside, each with an inject
and a heal that returns only once it has seen the system work again.

A fault is named by a spec (``kill:orders-1``, ``latency:orders->payments:200ms``,
``broker:kill``, … — :data:`FAMILIES` lists them all, :mod:`colony.faults.spec` the grammar)
and finds what it breaks through the running topology (``processes.json`` in the data
directory, which ``colony up --distributed`` keeps current)::

    topology = RunningTopology.load(Path("var/data"))
    fault = fault_from_spec("latency:orders->payments:200ms", topology)
    async with fault.injected():      # inject; heal on the way out, whatever happens
        ...                           # load, checks
    # or: await fault.inject(); ...; await fault.heal()   (NotHealed if it did not mend)

Faults touch only this machine: the topology's own processes (pids that are children of its
supervisor), their loopback addresses, and the databases of its services. Link, delivery and
clock faults are installed in each process through ``/admin/faults``, which a process serves
only with ``COLONY_FAULT_INJECTION`` on (``colony up --distributed --faults``).
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp

from colony.faults.base import Fault, FaultSpecError, InjectionFailed, NotHealed, TopologyNotRunning
from colony.faults.provider import HEALTHY, ProviderFault
from colony.faults.spec import FAMILIES, Family, parse
from colony.faults.topology import RunningTopology

__all__ = [
    "FAMILIES",
    "Family",
    "Fault",
    "FaultSpecError",
    "InjectionFailed",
    "NotHealed",
    "RunningTopology",
    "TopologyNotRunning",
    "fault_from_spec",
    "heal_everything",
]


def fault_from_spec(text: str, topology: RunningTopology) -> Fault:
    """The fault ``text`` names, in ``topology``; FaultSpecError if it names none (an unknown
    family, a malformed value, a service the topology does not run)."""
    return parse(text).build(topology)


async def heal_everything(topology: RunningTopology) -> list[str]:
    """Mend whatever any fault may have left, without knowing which: every stopped process
    continued, every process's fault table emptied, the payment provider's faults lifted.
    (A killed process is the supervisor's to bring back; a held database outage ends with
    the process holding it.) Returns what it could not reach."""
    topology.refresh()
    for name in topology.processes:
        pid = topology.owned_pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    problems = []
    timeout = aiohttp.ClientTimeout(total=5.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def empty(name: str, url: str) -> None:
            try:
                async with session.delete(url + "/admin/faults") as response:
                    if response.status not in (200, 404):  # 404: it takes no faults
                        problems.append(f"{name} answered {response.status}")
            except aiohttp.ClientConnectorError:
                pass  # down: it starts again without faults
            except (aiohttp.ClientError, TimeoutError) as exc:
                problems.append(f"{name} did not answer: {exc!r}")

        await asyncio.gather(
            *(
                empty(p.name, p.url)
                for p in topology.processes.values()
                if p.url.startswith("http") and p.pid is not None
            )
        )
    provider = ProviderFault("provider", "", topology, dict(HEALTHY))
    try:
        await provider.heal()
    except (NotHealed, FaultSpecError) as exc:
        problems.append(f"payment provider: {exc}")
    return problems
