"""A database outage for one service, held by the injecting process for as long as it lasts.

- **SQLite**: the injector opens the service's file and holds ``BEGIN EXCLUSIVE``: no other
  connection can write (in WAL mode readers still read), so each of the service's writes
  waits out its busy timeout and fails with "database is locked".
- **PostgreSQL**: the injector terminates the service's connections (``pg_terminate_backend``)
  every tenth of a second, new ones included. The service's connections are told apart by
  their client port, read from /proc for the service's own processes, so another program on
  the same server (another topology, a test suite) whose backends carry the same
  ``application_name`` is never touched.

Healed when the lock is released (or the terminating stops) and every process of the service
is ready again (its readiness probe asks its database).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from colony.faults.base import Fault, FaultSpecError, InjectionFailed
from colony.faults.probes import answers, wait_until
from colony.faults.topology import RunningTopology

TERMINATE_EVERY_SECONDS = 0.1
_LOCK_WAIT_SECONDS = 10.0


class DatabaseOutage(Fault):
    held = True

    def __init__(self, spec: str, description: str, topology: RunningTopology, service: str):
        self.spec = spec
        self.description = description
        self.topology = topology
        self.service = service
        self.terminated = 0
        """Connections terminated so far (PostgreSQL)."""
        self._lock: sqlite3.Connection | None = None
        self._terminator: asyncio.Task[None] | None = None
        self._pg: Any = None

    def dsn(self) -> str:
        return self.topology.settings(self.service).dsn_for(self.service)

    async def inject(self) -> None:
        self.topology.refresh()
        dsn = self.dsn()
        if dsn.startswith("sqlite:///"):
            await self._lock_file(self._sqlite_path(dsn.removeprefix("sqlite:///")))
        elif dsn.startswith(("postgresql://", "postgres://")):
            await self._start_terminating(dsn)
        else:
            raise FaultSpecError(f"{self.service}'s database is neither SQLite nor PostgreSQL")

    async def heal(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            await asyncio.to_thread(_release, lock)
        if self._terminator is not None:
            self._terminator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._terminator
            self._terminator = None
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
            self._pg = None

        async def ready() -> str | None:
            self.topology.refresh()
            for name in self.topology.services[self.service]:
                if not await answers(self.topology.process(name).url):
                    return f"{name} is not ready"
            return None

        await wait_until(ready, self.heal_within)

    # --- SQLite -----------------------------------------------------------------------------

    def _sqlite_path(self, path: str) -> Path:
        file = Path(path)
        if not file.is_absolute():
            # Relative to where the service runs, not to where the injector does.
            file = self.topology.working_directory(self.topology.services[self.service][0]) / file
        if not file.exists():
            raise InjectionFailed(f"{self.service}'s database file {file} does not exist")
        return file

    async def _lock_file(self, file: Path) -> None:
        try:
            self._lock = await asyncio.to_thread(_lock, file)
        except sqlite3.Error as exc:
            raise InjectionFailed(f"could not lock {file}: {exc}") from None

    # --- PostgreSQL -------------------------------------------------------------------------

    async def _start_terminating(self, dsn: str) -> None:
        from colony.platform.storage.postgres import parse_dsn

        host = urlsplit(dsn).hostname or ""
        if not _loopback(host):
            raise FaultSpecError(
                f"{self.service}'s database is at {host!r}: an outage is injected only into a"
                " PostgreSQL reached over TCP on this machine (127.0.0.1)"
            )
        import asyncpg

        settings = {"application_name": "colony-faults"}
        try:
            self._pg = await asyncpg.connect(parse_dsn(dsn).dsn, server_settings=settings)
        except (OSError, asyncpg.PostgresError) as exc:
            raise InjectionFailed(f"could not reach {self.service}'s database: {exc}") from None
        await self._terminate_once()
        self._terminator = asyncio.create_task(self._terminate_forever())

    async def _terminate_forever(self) -> None:
        while True:
            await asyncio.sleep(TERMINATE_EVERY_SECONDS)
            with contextlib.suppress(Exception):
                await self._terminate_once()

    async def _terminate_once(self) -> None:
        ports = self._client_ports()
        if not ports:
            return
        terminated = await self._pg.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND client_port = ANY($1::int[])"
            " AND host(client_addr) IN ('127.0.0.1', '::1')",
            sorted(ports),
        )
        self.terminated += terminated or 0

    def _client_ports(self) -> set[int]:
        """The local ports of every TCP connection the service's processes hold."""
        inodes: set[str] = set()
        for name in self.topology.services[self.service]:
            pid = self.topology.owned_pid(name)
            if pid is not None:
                inodes |= _socket_inodes(pid)
        return {port for inode, port in _tcp_local_ports().items() if inode in inodes}


def _lock(file: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        file, timeout=_LOCK_WAIT_SECONDS, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("BEGIN EXCLUSIVE")
    except BaseException:
        conn.close()
        raise
    return conn


def _release(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _loopback(host: str) -> bool:
    """A loopback address. Not a Unix socket: its connections have no port to tell the
    service's apart by."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(target[len("socket:[") : -1])
    return found


def _tcp_local_ports() -> dict[str, int]:
    """Socket inode → local port, for every TCP socket in this network namespace."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports
