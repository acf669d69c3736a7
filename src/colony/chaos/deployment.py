"""A topology started for a chaos run: ``colony up --distributed --faults`` in a subprocess,
on free ports, in a data directory of its own, on SQLite or on PostgreSQL. Reached as a
person reaches it: its gateway over HTTP, its processes through ``processes.json``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from colony.composition import SERVICE_NAMES
from colony.platform.web.server import free_port

COLONY = str(Path(sys.executable).parent / "colony")
DATABASES = ("sqlite", "postgresql")


@dataclass
class Deployment:
    data_dir: Path
    url: str
    provider_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def verify(self, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """``colony verify`` against this topology's databases, as an operator runs it."""
        return subprocess.run(
            [COLONY, "verify"], env=self.env, capture_output=True, text=True, timeout=timeout
        )


def environment(
    data_dir: Path,
    port: int,
    provider_port: int,
    database: str = "sqlite",
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    if database not in DATABASES:
        raise ValueError(f"database must be one of {', '.join(DATABASES)}")
    env = {
        **os.environ,
        "COLONY_DATA_DIR": str(data_dir),
        "COLONY_PORT": str(port),
        "COLONY_LOG_LEVEL": "warning",
        "COLONY_PAYMENT_PROVIDER_URL": f"http://127.0.0.1:{provider_port}",
        "COLONY_SMTP_PORT": str(free_port()),
        "COLONY_MAIL_SINK_HTTP_PORT": str(free_port()),
        "COLONY_FAULT_INJECTION": "1",
    }
    if database == "postgresql":
        # A schema per service, named after the run, so runs never see each other's data.
        prefix = re.sub(r"[^a-z0-9]", "", data_dir.name.lower())[-10:] or "chaos"
        for name in SERVICE_NAMES:
            env[f"COLONY_{name.upper()}_DSN"] = f"{postgres_url}?search_path=chaos{prefix}_{name}"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def started(
    data_dir: Path,
    replicas: str = "",
    database: str = "sqlite",
    extra_env: Mapping[str, str] | None = None,
    within: float = 120.0,
) -> Iterator[Deployment]:
    """The topology, ready; stopped (SIGINT, as Ctrl-C) on the way out."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port, provider_port = free_port(), free_port()
    env = environment(data_dir, port, provider_port, database, extra=extra_env)
    command = [COLONY, "up", "--distributed", "--faults"]
    if replicas:
        command += ["--replicas", replicas]
    log = data_dir / "colony-up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deployment = Deployment(
        data_dir,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{provider_port}",
        env,
        process,
        log,
    )
    try:
        _wait_ready(deployment, within)
        yield deployment
    finally:
        _stop(process)


def _wait_ready(deployment: Deployment, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if deployment.process.poll() is not None:
            raise RuntimeError(f"colony up exited:\n{deployment.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(deployment.url + "/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the topology was not ready within {within:g} s:\n{deployment.output()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
