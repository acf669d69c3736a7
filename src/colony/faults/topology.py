"""The running topology as the injector sees it: ``processes.json`` in the data directory, and
for each process what /proc says about it.

A pid is signalled only if it is one of the topology's processes *now*: alive, and a child of
the supervisor that wrote the file. A stale file, a pid reused by another program, or a
process orphaned when its supervisor died is never touched.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from colony.distributed.nats_server import NATS
from colony.distributed.processes import PROCESSES_FILE, Processes, read_processes
from colony.faults.base import FaultSpecError, TopologyNotRunning
from colony.platform.config import Settings

GATEWAY = "gateway"
EXTERNAL = ("payment-provider", "smtp", "webhooks")
"""Dependencies outside the topology that a link may lead to."""


@dataclass(frozen=True, slots=True)
class RunningProcess:
    name: str  # orders-2, gateway-1, nats
    service: str
    pid: int | None
    url: str
    restarts: int


class RunningTopology:
    def __init__(self, data_dir: Path, table: Processes) -> None:
        self.data_dir = data_dir
        self._table = table

    @classmethod
    def load(cls, data_dir: Path) -> RunningTopology:
        """The topology running from ``data_dir``; TopologyNotRunning if there is none."""
        table = read_processes(data_dir)
        if table is None:
            raise TopologyNotRunning(
                f"no running topology in {data_dir} (no {PROCESSES_FILE}): start one with"
                " `colony up --distributed --faults`, or give its --data-dir"
            )
        if not _alive(table.supervisor_pid):
            raise TopologyNotRunning(
                f"the topology recorded in {data_dir / PROCESSES_FILE} has stopped"
                f" (its supervisor, pid {table.supervisor_pid}, is gone)"
            )
        return cls(data_dir, table)

    def refresh(self) -> None:
        """Read ``processes.json`` again: pids change as the supervisor restarts processes."""
        table = read_processes(self.data_dir)
        if table is None:
            raise TopologyNotRunning(f"the topology in {self.data_dir} has stopped")
        self._table = table

    @property
    def supervisor_pid(self) -> int:
        return self._table.supervisor_pid

    @property
    def processes(self) -> dict[str, RunningProcess]:
        return {
            name: RunningProcess(name, r.service, r.pid, r.url, r.restarts)
            for name, r in self._table.processes.items()
        }

    @property
    def services(self) -> dict[str, list[str]]:
        """Each service (the gateway included, the broker not) → its processes' names."""
        found: dict[str, list[str]] = {}
        for name, record in self._table.processes.items():
            if record.service != NATS:
                found.setdefault(record.service, []).append(name)
        return found

    @property
    def has_broker(self) -> bool:
        """Whether the broker is one of the topology's processes (not a COLONY_NATS_URL)."""
        return NATS in self._table.processes

    def process(self, name: str) -> RunningProcess:
        return self.processes[name]

    def targets(self, target: str) -> list[str]:
        """``orders`` → every replica of orders; ``orders-2``, ``nats`` → that process."""
        services = self.services
        if target in services:
            return list(services[target])
        if target in self._table.processes:
            return [target]
        known = sorted(services) + sorted(self._table.processes)
        raise FaultSpecError(
            f"no service or process named {target!r} in the running topology;"
            f" known: {', '.join(known)}"
        )

    def service(self, name: str, what: str = "service") -> str:
        """``name`` if it is one of the topology's services (not a replica's name)."""
        services = self.services
        if name in services:
            return name
        if name in self._table.processes:
            raise FaultSpecError(
                f"{what} must be a service, not one of its processes: {name!r} is a process of"
                f" {self._table.processes[name].service!r}"
            )
        raise FaultSpecError(
            f"no service named {name!r} in the running topology; known:"
            f" {', '.join(sorted(services))}"
        )

    def owned_pid(self, name: str) -> int | None:
        """The pid of process ``name`` if it runs now as a child of the topology's
        supervisor; None while it is down (or if the file names a pid that is not ours)."""
        record = self._table.processes.get(name)
        if record is None or record.pid is None:
            return None
        return record.pid if self.owns(record.pid) else None

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` runs now as a child of the topology's supervisor."""
        return _parent_of(pid) == self.supervisor_pid

    def environment(self, name: str) -> dict[str, str]:
        """The environment process ``name`` was started with (from /proc)."""
        pid = self.owned_pid(name)
        if pid is None:
            raise FaultSpecError(f"{name} is not running, so its settings cannot be read")
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
        return {key.decode(): value.decode(errors="replace") for key, _, value in pairs}

    def settings(self, service: str) -> Settings:
        """The settings one running process of ``service`` sees (its database, the payment
        provider's address, …), read from the environment it was started with."""
        for name in self.services.get(service, []):
            if self.owned_pid(name) is not None:
                return Settings.from_env(self.environment(name))
        raise FaultSpecError(f"no process of {service} is running to read its settings from")

    def working_directory(self, name: str) -> Path:
        pid = self.owned_pid(name)
        if pid is None:
            raise FaultSpecError(f"{name} is not running")
        return Path(os.readlink(f"/proc/{pid}/cwd"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in (None, "Z")


def _stat_fields(pid: int) -> list[str] | None:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # "pid (comm) state ppid …": comm may hold spaces and parentheses; split after it.
        return stat[stat.rindex(")") + 2 :].split()
    return None


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[1])


def process_state(pid: int) -> str | None:
    """The state letter /proc shows (R, S, T when stopped, Z, …); None if it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None
