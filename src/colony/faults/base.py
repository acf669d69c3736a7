"""What every fault is: an inject, a heal that says whether it worked, and a description."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator


class FaultSpecError(ValueError):
    """The spec is not one: an unknown family, a malformed value, a service or process the
    running topology does not have, or a fault this topology cannot take."""


class TopologyNotRunning(RuntimeError):
    """No topology runs from the data directory (or the one recorded there has stopped)."""


class InjectionFailed(RuntimeError):
    """The fault could not be injected; whatever part of it was injected has been healed."""


class NotHealed(RuntimeError):
    """The heal ran, but what it mends was not seen to work again within the time allowed."""


class Fault(abc.ABC):
    """One fault in a running topology.

    ``inject()`` breaks something; ``heal()`` mends it and returns only once it has seen it
    work again (a killed process back and ready, a paused one answering, a link's fault gone
    from every replica), and raises :class:`NotHealed` otherwise. A heal needs nothing the
    inject remembered: ``colony faults heal SPEC`` in another process mends the fault as well
    as the injecting one would. The exception is a *held* fault (``held``: a database outage),
    which lasts only while the process that injected it holds it.
    """

    spec: str
    """The spec it was built from (see :func:`colony.faults.fault_from_spec`)."""
    description: str
    held: bool = False
    heal_within: float = 90.0
    """Seconds a heal waits to see things work again; a killed process comes back after the
    supervisor's backoff (up to 30 s while it keeps dying) and its start-up."""

    @abc.abstractmethod
    async def inject(self) -> None: ...

    @abc.abstractmethod
    async def heal(self) -> None: ...

    @contextlib.asynccontextmanager
    async def injected(self) -> AsyncIterator[Fault]:
        """Injected inside the block, healed on leaving it, whatever happens inside."""
        await self.inject()
        try:
            yield self
        finally:
            await self.heal()

    async def inject_for(self, seconds: float) -> None:
        """Inject, wait ``seconds``, heal."""
        async with self.injected():
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"
