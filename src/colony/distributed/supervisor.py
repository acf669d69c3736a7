"""Keeps the processes of the multi-process topology running: a process that exits without
being asked to is started again, after a backoff that grows while it keeps failing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from colony.platform.logging import get_logger

_log = get_logger("supervisor")


async def terminate(
    process: asyncio.subprocess.Process, name: str, grace_seconds: float = 10.0
) -> None:
    """Ask a process to stop (SIGTERM); kill it if it is still there after the grace."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        async with asyncio.timeout(grace_seconds):
            await process.wait()
    except TimeoutError:
        _log.warning("process did not stop; killing it", process=name, pid=process.pid)
        process.kill()
        await process.wait()


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_seconds: float = 0.5
    max_seconds: float = 30.0
    stable_after_seconds: float = 30.0
    """A process that ran this long before failing starts again at the initial backoff."""

    def backoff(self, failures: int) -> float:
        # The doublings stop at 64, long past max_seconds: unbounded, 2 ** n overflows a
        # float after 1024 failures in a row (some 8 hours of a process that cannot start).
        doublings = min(max(0, failures - 1), 64)
        return min(self.max_seconds, self.initial_seconds * 2.0**doublings)


class ProcessSpec(Protocol):
    """What the supervisor needs to know of a process: a service's (see
    :class:`colony.distributed.plan.ServiceProcess`) or the broker's."""

    @property
    def service(self) -> str: ...

    @property
    def instance(self) -> str: ...

    @property
    def url(self) -> str: ...

    def command(self) -> list[str]: ...

    def spawn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_subprocess_exec`` beyond the command."""
        ...


@dataclass
class Supervised:
    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    failures: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    def __init__(
        self,
        environment: Mapping[str, str],
        policy: RestartPolicy | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called whenever a child starts or exits (it keeps
        ``processes.json`` current)."""
        self.environment = dict(environment)
        self.policy = policy or RestartPolicy()
        self.children: list[Supervised] = []
        self._stopping = False
        self._on_change = on_change

    async def start(self, spec: ProcessSpec) -> Supervised:
        child = Supervised(spec)
        self.children.append(child)
        await self._spawn(child)
        child.task = asyncio.create_task(self._watch(child), name=f"supervise-{spec.instance}")
        return child

    async def _spawn(self, child: Supervised) -> None:
        env = {**os.environ, **self.environment}
        child.process = await asyncio.create_subprocess_exec(
            *child.spec.command(), env=env, **child.spec.spawn_options()
        )
        _log.info("started", instance=child.spec.instance, pid=child.process.pid)
        if self._on_change is not None:
            self._on_change()

    async def _watch(self, child: Supervised) -> None:
        while True:
            assert child.process is not None
            started = time.monotonic()
            code = await child.process.wait()
            if self._stopping:
                return
            if self._on_change is not None:
                self._on_change()
            if time.monotonic() - started >= self.policy.stable_after_seconds:
                child.failures = 0
            child.failures += 1
            delay = self.policy.backoff(child.failures)
            _log.warning(
                "process exited; restarting",
                instance=child.spec.instance,
                exit_code=code,
                restart_in_seconds=delay,
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            child.restarts += 1
            await self._spawn(child)

    async def wait_ready(self, child: Supervised, within: float = 60.0) -> None:
        """Until the process answers its readiness probe."""
        url = child.spec.url + "/health/ready"
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{child.spec.instance} was not ready within {within} s")
                await asyncio.sleep(0.1)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Ask every process to stop (SIGTERM), then kill what is still there after the grace."""
        self._stopping = True
        await asyncio.gather(
            *(
                terminate(child.process, child.spec.instance, grace_seconds)
                for child in self.children
                if child.process is not None
            )
        )
        for child in self.children:
            if child.task is not None:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task
