"""``faults.json`` in the data directory: the faults ``colony faults inject`` left in place,
so that ``colony faults status`` can list them and ``colony faults heal --all`` can mend them
from another command. A held fault (a database outage) names the process holding it; asking
that process to stop (SIGTERM) is how another command heals it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from colony.platform.clock import utc_now_iso

LEDGER_FILE = "faults.json"


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    spec: str
    description: str
    injected_at: str
    holder_pid: int | None = None
    """The ``colony faults inject`` process holding a held fault, else None."""


class Ledger:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LEDGER_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Entry]]:
        """The entries, to change in place; written back on leaving, under a file lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(LEDGER_FILE + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            partial = self.path.with_name(LEDGER_FILE + ".partial")
            partial.write_bytes(msgspec.json.format(msgspec.json.encode(entries)))
            os.replace(partial, self.path)

    def _read(self) -> list[Entry]:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=list[Entry])
        except (FileNotFoundError, msgspec.DecodeError):
            return []

    def entries(self) -> list[Entry]:
        return self._read()

    def add(self, spec: str, description: str, holder_pid: int | None = None) -> None:
        with self._locked() as entries:
            entries[:] = [e for e in entries if e.spec != spec or e.holder_pid != holder_pid]
            entries.append(
                Entry(
                    spec=spec,
                    description=description,
                    injected_at=utc_now_iso(),
                    holder_pid=holder_pid,
                )
            )

    def remove(self, spec: str | None = None, holder_pid: int | None = None) -> None:
        """Forget ``spec`` (every entry of it; with ``holder_pid``, only that holder's), or
        every entry when ``spec`` is None."""
        with self._locked() as entries:
            entries[:] = [
                e
                for e in entries
                if spec is not None
                and (e.spec != spec or (holder_pid is not None and e.holder_pid != holder_pid))
            ]
