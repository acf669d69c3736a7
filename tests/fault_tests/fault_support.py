"""Running topologies for the injector's tests without starting the marketplace: stand-in
service processes (``fake_service.py``), children of the test process, recorded in a
``processes.json`` whose supervisor is the test process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec

from colony.distributed.processes import PROCESSES_FILE, Processes, ProcessRecord
from colony.faults import RunningTopology
from colony.platform.web.server import free_port

FAKE_SERVICE = str(Path(__file__).with_name("fake_service.py"))


def write_processes(data_dir: Path, records: Mapping[str, ProcessRecord]) -> RunningTopology:
    table = Processes(supervisor_pid=os.getpid(), updated_at="now", processes=dict(records))
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PROCESSES_FILE).write_bytes(msgspec.json.encode(table))
    return RunningTopology.load(data_dir)


def paper_topology(data_dir: Path, replicas: Mapping[str, int]) -> RunningTopology:
    """A topology on paper (no process behind any pid): enough to build faults from specs."""
    records = {
        f"{service}-{n}": ProcessRecord(
            service=service, pid=None, url=f"http://127.0.0.1:{9000 + i}", restarts=0
        )
        for i, (service, count) in enumerate(replicas.items())
        for n in range(1, count + 1)
    }
    records["nats"] = ProcessRecord(
        service="nats", pid=None, url="nats://127.0.0.1:4222", restarts=0
    )
    return write_processes(data_dir, records)


def _answers(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url + "/health/live", timeout=1) as response,
    ):
        return bool(response.status == 200)
    return False


@contextlib.contextmanager
def fake_services(
    data_dir: Path, services: Mapping[str, str | None], env: Mapping[str, str] | None = None
) -> Iterator[RunningTopology]:
    """One stand-in process per service (``{name: DSN it checks or None}``), each started
    with ``env`` and COLONY_DATA_DIR; stopped on the way out."""
    started: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    environment = {**os.environ, "COLONY_DATA_DIR": str(data_dir), **(env or {})}
    try:
        for service, dsn in services.items():
            port = free_port()
            command = [sys.executable, FAKE_SERVICE, str(port), *([dsn] if dsn else [])]
            started[service] = (
                subprocess.Popen(command, env=environment),
                f"http://127.0.0.1:{port}",
            )
        deadline = time.monotonic() + 20
        while not all(_answers(url) for _, url in started.values()):
            assert time.monotonic() < deadline, "the stand-in services did not start"
            time.sleep(0.05)
        records = {
            f"{service}-1": ProcessRecord(service=service, pid=process.pid, url=url, restarts=0)
            for service, (process, url) in started.items()
        }
        yield write_processes(data_dir, records)
    finally:
        for process, _ in started.values():
            process.kill()
            process.wait(10)
