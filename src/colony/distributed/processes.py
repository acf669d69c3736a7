"""``processes.json`` in the data directory: which process of a running topology is which.

Tools that act on a running topology from outside (``colony faults``) find its processes
here: each one's name (``orders-2``, ``gateway-1``, ``nats``), service, pid and address, and
the pid of the supervisor whose children they are. It is rewritten whenever a process starts
or exits (a pid is null while its process waits to be started again), atomically, so a reader
never sees half of it; it is removed when the topology stops.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from colony.distributed.supervisor import Supervised
from colony.platform.clock import utc_now_iso

PROCESSES_FILE = "processes.json"


class ProcessRecord(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    pid: int | None
    """None while the process is down, waiting to be started again."""
    url: str
    restarts: int


class Processes(msgspec.Struct, frozen=True, kw_only=True):
    supervisor_pid: int
    """The process that started (and restarts) every one below: a pid whose parent is not
    this one is not the topology's, whatever the file says."""
    updated_at: str
    processes: dict[str, ProcessRecord]


class ProcessTable:
    """Writes ``processes.json`` for the supervised processes added to it; give ``write`` to
    their supervisors as ``on_change``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: list[Supervised] = []

    def add(self, children: Iterable[Supervised]) -> None:
        self.children += children
        self.write()

    def write(self) -> None:
        records = {
            child.spec.instance: ProcessRecord(
                service=child.spec.service,
                pid=child.pid if child.running else None,
                url=child.spec.url,
                restarts=child.restarts,
            )
            for child in self.children
        }
        table = Processes(supervisor_pid=os.getpid(), updated_at=utc_now_iso(), processes=records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_bytes(msgspec.json.format(msgspec.json.encode(table)))
        os.replace(partial, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_processes(data_dir: Path) -> Processes | None:
    """The running topology's processes, or None when none runs from ``data_dir``."""
    try:
        return msgspec.json.decode((data_dir / PROCESSES_FILE).read_bytes(), type=Processes)
    except FileNotFoundError:
        return None
