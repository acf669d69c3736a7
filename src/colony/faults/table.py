"""Faults a process injects into itself (:mod:`colony.platform.faults`), installed through its
``/admin/faults``: a link's latency, errors, drops and lost answers; duplicate, shuffled and
slow deliveries; a skewed clock.

Each fault goes to every process it concerns (every replica of the caller, both sides of a
partition) under one id derived from the spec, so a heal needs no memory of the inject: it
deletes that id everywhere. A process that refuses the connection at heal time is down or
starting again, and a process starts with no faults, so that counts as healed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from colony.faults.base import Fault, InjectionFailed, NotHealed
from colony.faults.topology import RunningTopology

_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
_RETRY_SECONDS = 0.25


class TableFault(Fault):
    def __init__(
        self,
        spec: str,
        description: str,
        topology: RunningTopology,
        installs: list[tuple[str, dict[str, Any]]],
    ) -> None:
        """``installs``: (process name, the fault's JSON with its ``id``) for each process."""
        self.spec = spec
        self.description = description
        self.topology = topology
        self.installs = installs

    async def inject(self) -> None:
        self.topology.refresh()
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            results = await asyncio.gather(
                *(self._install(session, name, body) for name, body in self.installs),
                return_exceptions=True,
            )
        failures = [str(r) for r in results if isinstance(r, BaseException)]
        if failures:
            with contextlib.suppress(NotHealed):
                await self.heal()
            raise InjectionFailed("; ".join(failures))

    async def _install(
        self, session: aiohttp.ClientSession, name: str, body: dict[str, Any]
    ) -> None:
        url = self.topology.process(name).url + "/admin/faults"
        try:
            async with session.put(url, json=body) as response:
                if response.status == 404:
                    raise InjectionFailed(
                        f"{name} does not take faults: start the topology with"
                        " `colony up --distributed --faults` (COLONY_FAULT_INJECTION=true)"
                    )
                if response.status != 200:
                    raise InjectionFailed(f"{name} refused the fault: {await _detail(response)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InjectionFailed(f"{name} could not be reached: {exc!r}") from None

    async def heal(self) -> None:
        self.topology.refresh()
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            await asyncio.gather(
                *(self._remove(session, name, str(body["id"])) for name, body in self.installs)
            )

    async def _remove(self, session: aiohttp.ClientSession, name: str, fault_id: str) -> None:
        url = f"{self.topology.process(name).url}/admin/faults/{fault_id}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.heal_within
        while True:
            try:
                async with session.delete(url) as response:
                    if response.status in (200, 404):
                        return  # removed, or it was not there
                    problem = f"{name} answered {response.status}: {await _detail(response)}"
            except aiohttp.ClientConnectorError:
                return  # down or starting again: it will start without the fault
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{name} did not answer: {exc!r}"
            if loop.time() > deadline:
                raise NotHealed(f"{self.spec} could not be removed from {name}: {problem}")
            await asyncio.sleep(_RETRY_SECONDS)


async def _detail(response: aiohttp.ClientResponse) -> str:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return response.reason or str(response.status)
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
