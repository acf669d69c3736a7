"""A whole marketplace started the way people start it — ``colony up`` in a subprocess — in
one of its topologies, reached only over HTTP, as a buyer and an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from colony.platform.web.server import free_port

if TYPE_CHECKING:
    from postgres_support import ServiceRoles

COLONY = str(Path(sys.executable).parent / "colony")


@dataclass(frozen=True)
class TopologyChoice:
    name: str
    distributed: bool = False
    replicas: str = ""
    needs_servers: bool = False


@dataclass
class Deployment:
    topology: TopologyChoice
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    provider_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    roles: ServiceRoles | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "COLONY_DATA_DIR": str(self.data_dir),
            "COLONY_PORT": str(self.port),
            "COLONY_LOG_LEVEL": "warning",
            "COLONY_PASSWORD_HASH_COST": "fast",
            "COLONY_SEARCH_CACHE_SECONDS": "0",
            "COLONY_PAYMENT_PROVIDER_URL": self.provider_url,
            "COLONY_PAYMENT_TIMEOUT_SECONDS": "0.5",
            "COLONY_SAGA_STEP_TIMEOUT_SECONDS": "2",
            # A provider outage outlasts it, so the outage test sees a clean cancellation.
            "COLONY_SAGA_STEP_PATIENCE_SECONDS": "2",
            # ... and a breaker that probes well within it, so the order after it completes.
            "COLONY_RESILIENCE": '{"*": {"breaker.open_seconds": 0.2, "breaker.max_open_seconds":'
            " 0.5}}",
            # A replica's sagas pass to another 2 s after it stops renewing their leases, and
            # the supervisor waits 8 s before restarting a process: long enough to see that
            # the other replica finished them.
            "COLONY_SAGA_LEASE_SECONDS": "2",
            "COLONY_RESTART_BACKOFF_SECONDS": "8",
            "COLONY_COURIER_STEP_SECONDS": "3600",
            # Every trace recorded: the suite looks at whole ones.
            "COLONY_TRACE_SAMPLE_RATIO": "1",
            "COLONY_SMTP_PORT": str(free_port()),
            "COLONY_MAIL_SINK_HTTP_PORT": str(free_port()),
            "COLUMNS": "200",
            **self.extra_env,
        }

    def start(self, within: float = 120.0) -> None:
        self._give_services_their_roles()
        command = [COLONY, "up", "--seed-size", "30"]
        if self.topology.distributed:
            command.append("--distributed")
        if self.topology.replicas:
            command += ["--replicas", self.topology.replicas]
        self.log = (self.data_dir.parent / f"colony-{self.topology.name}.log").open("w")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"colony up exited:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"not ready within {within} s:\n{self.output()}")

    def _give_services_their_roles(self) -> None:
        """On PostgreSQL, each service logs in as a role of its own that owns its schema and
        has no rights on any other (deploy/postgres/roles.sql), as in compose and on
        Kubernetes: a service that touched another's tables would fail here."""
        keys = [
            key
            for key, value in self.extra_env.items()
            if key.startswith("COLONY_") and key.endswith("_DSN") and value.startswith("postgres")
        ]
        if not keys:
            return
        from postgres_support import service_roles_database

        self.roles = service_roles_database("e2e")
        for key in keys:
            service = key.removeprefix("COLONY_").removesuffix("_DSN").lower()
            self.extra_env[key] = self.roles.dsn(service)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-6000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        if self.roles is not None:
            self.roles.drop()
            self.roles = None

    def verify(self) -> subprocess.CompletedProcess[str]:
        return self.command("verify")

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``colony <args>`` against this deployment, its table wide enough to read whole."""
        env = {**self.env, "COLUMNS": "400"}
        return subprocess.run([COLONY, *args], env=env, capture_output=True, text=True, timeout=180)

    def service_pids(self, instance: str) -> list[int]:
        """The pids of the supervised processes serving ``instance`` (e.g. orders-1)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = []
        for pid in children.read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if b"serve" in argv and instance.encode() in argv:
                pids.append(int(pid))
        return pids
