"""Process faults: a kill (SIGKILL) that the supervisor mends by starting the process again,
and a pause (SIGSTOP, then SIGCONT): a process that holds its connections and answers nothing,
which no refused connection reveals.

Only pids that are the topology's processes at that moment are signalled
(:meth:`RunningTopology.owned_pid`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

from colony.faults.base import Fault, InjectionFailed, NotHealed
from colony.faults.probes import answers, wait_until
from colony.faults.topology import RunningTopology, process_state


class _ProcessFault(Fault):
    def __init__(
        self,
        spec: str,
        description: str,
        topology: RunningTopology,
        names: list[str],
        then_all_ready: bool = False,
    ) -> None:
        self.spec = spec
        self.description = description
        self.topology = topology
        self.names = names
        self.then_all_ready = then_all_ready
        """Heal also waits for every process of the topology to be ready (after a broker
        fault: each service has reconnected)."""
        self._signalled: dict[str, int] = {}

    def _victims(self) -> dict[str, int]:
        self.topology.refresh()
        victims = {}
        for name in self.names:
            pid = self.topology.owned_pid(name)
            if pid is None:
                raise InjectionFailed(
                    f"{name} is not running now (is the supervisor starting it again?)"
                )
            victims[name] = pid
        return victims

    async def _all_ready(self) -> str | None:
        processes = self.topology.processes.values()
        states = await asyncio.gather(*(answers(p.url) for p in processes if p.pid is not None))
        down = [p.name for p in processes if p.pid is None]
        if down or not all(states):
            return "not every process of the topology is ready again"
        return None


class ProcessKill(_ProcessFault):
    """SIGKILL, returning once each one is gone; healed once the supervisor has started
    each one again and it is ready."""

    async def inject(self) -> None:
        self._signalled = self._victims()
        for pid in self._signalled.values():
            os.kill(pid, signal.SIGKILL)

        async def gone() -> str | None:
            alive = [
                pid for pid in self._signalled.values() if process_state(pid) not in (None, "Z")
            ]
            return f"pids {alive} still run" if alive else None

        await _in_effect(gone)

    async def heal(self) -> None:
        async def back() -> str | None:
            self.topology.refresh()
            for name in self.names:
                pid = self.topology.owned_pid(name)
                if pid is None or pid == self._signalled.get(name):
                    return f"{name} has not been started again"
                if not await answers(self.topology.process(name).url):
                    return f"{name} (pid {pid}) is not ready"
            return await self._all_ready() if self.then_all_ready else None

        await wait_until(back, self.heal_within)


class ProcessPause(_ProcessFault):
    """SIGSTOP, returning once each one is stopped; healed by SIGCONT, once each one answers
    again."""

    async def inject(self) -> None:
        self._signalled = self._victims()
        for pid in self._signalled.values():
            os.kill(pid, signal.SIGSTOP)

        async def stopped() -> str | None:
            running = [pid for pid in self._signalled.values() if process_state(pid) != "T"]
            return f"pids {running} are not stopped" if running else None

        await _in_effect(stopped)

    async def heal(self) -> None:
        self.topology.refresh()
        current = (self.topology.owned_pid(name) for name in self.names)
        pids = {pid for pid in (*self._signalled.values(), *current) if pid is not None}
        for pid in pids:
            if self.topology.owns(pid):
                os.kill(pid, signal.SIGCONT)

        async def answering() -> str | None:
            for name in self.names:
                pid = self.topology.owned_pid(name)
                if pid is not None and process_state(pid) == "T":
                    os.kill(pid, signal.SIGCONT)
                    return f"{name} (pid {pid}) is still stopped"
                if not await answers(self.topology.process(name).url, "/health/live"):
                    return f"{name} does not answer"
            return await self._all_ready() if self.then_all_ready else None

        await wait_until(answering, self.heal_within)


async def _in_effect(check: Callable[[], Awaitable[str | None]]) -> None:
    """A signal is delivered when its process is next scheduled: wait for it to show."""
    try:
        await wait_until(check, within=5.0, every=0.01)
    except NotHealed as exc:
        raise InjectionFailed(str(exc)) from None
