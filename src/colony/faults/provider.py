"""Payment-provider faults, set through the simulator's control API (``/admin/behaviour``,
as ``colony provider set`` does): a full outage, a share of timeouts, a share of errors,
added latency, or a share of bad answers (garbage, a wrong amount or state, oversize, a slow
body). Each changes only its own part of the behaviour, and its heal puts only that
part back to the default (no fault), so faults of different kinds can overlap and a heal
needs no memory of what was there before."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from colony.faults.base import Fault, FaultSpecError, InjectionFailed, NotHealed
from colony.faults.topology import RunningTopology

_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
HEALTHY: dict[str, Any] = {
    "outage": False,
    "timeout_rate": 0.0,
    "error_rate": 0.0,
    "latency": {"p50_ms": 0.0, "p99_ms": 0.0},
    "garbage_rate": 0.0,
    "wrong_amount_rate": 0.0,
    "wrong_state_rate": 0.0,
    "oversize_rate": 0.0,
    "slow_body_rate": 0.0,
}


class ProviderFault(Fault):
    def __init__(
        self, spec: str, description: str, topology: RunningTopology, changes: dict[str, Any]
    ) -> None:
        """``changes``: the behaviour's fields to set (each one of :data:`HEALTHY`'s)."""
        self.spec = spec
        self.description = description
        self.topology = topology
        self.changes = changes

    def url(self) -> str:
        """Where the marketplace's payments service reaches the provider."""
        url = self.topology.settings("payments").payment_provider_url
        host = urlsplit(url).hostname or ""
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if not local:
            raise FaultSpecError(f"the payment provider is at {url}: not on this machine")
        return url.rstrip("/")

    async def inject(self) -> None:
        await self._set(self.changes, InjectionFailed)

    async def heal(self) -> None:
        await self._set({key: HEALTHY[key] for key in self.changes}, NotHealed)

    async def _set(self, changes: dict[str, Any], failure: type[Exception]) -> None:
        url = self.url() + "/admin/behaviour"
        try:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                async with session.get(url) as response:
                    if response.status != 200:
                        raise failure(f"the payment provider answered {response.status}")
                    behaviour = await response.json()
                behaviour.update(changes)
                async with session.put(url, json=behaviour) as response:
                    if response.status != 200:
                        text = await response.text()
                        raise failure(f"the payment provider refused: {text}")
                    now = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise failure(f"the payment provider at {url} did not answer: {exc!r}") from None
        wrong = {key: now.get(key) for key, value in changes.items() if now.get(key) != value}
        if wrong:
            raise failure(f"the payment provider's behaviour is {wrong}, not {changes}")
