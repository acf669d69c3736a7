"""Which processes the multi-process topology runs, on which ports, and the topology file
that tells each of them where the others are."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colony.platform.web.server import free_port

GATEWAY = "gateway"
SCRAPE_TARGETS_FILE = Path("prometheus") / "targets.json"
"""Under the data directory: where Prometheus finds this topology's processes
(deploy/prometheus/distributed.yml reads it)."""


@dataclass(frozen=True, slots=True)
class ServiceProcess:
    service: str  # a service's name, or "gateway"
    instance: str  # unique among replicas; a restart keeps it, and with it its sagas' leases
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, host: str = "127.0.0.1") -> list[str]:
        return [
            sys.executable,
            "-m",
            "colony",
            "serve",
            self.service,
            "--host",
            host,
            "--port",
            str(self.port),
            "--instance",
            self.instance,
        ]

    def spawn_options(self) -> dict[str, Any]:
        # The terminal's process group: a Ctrl-C reaches every service at once.
        return {}


def parse_replicas(spec: str, services: Iterable[str]) -> dict[str, int]:
    """``orders=3,inventory=2`` → {"orders": 3, "inventory": 2}; every other service: 1."""
    known = set(services) | {GATEWAY}
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, count = part.partition("=")
        name = name.strip()
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"replicas look like orders=3,inventory=2; got {part!r}")
        if name not in known:
            raise ValueError(f"no service named {name!r}; known: {', '.join(sorted(known))}")
        counts[name] = int(count)
    return counts


def plan(
    services: Iterable[str], replicas: dict[str, int], gateway_port: int
) -> list[ServiceProcess]:
    """Every service's replicas on free ports, then the gateway(s) (the first on
    ``gateway_port``, the address people use)."""
    processes = [
        ServiceProcess(name, f"{name}-{index}", free_port())
        for name in services
        for index in range(1, replicas.get(name, 1) + 1)
    ]
    gateways = replicas.get(GATEWAY, 1)
    processes += [
        ServiceProcess(GATEWAY, f"{GATEWAY}-{index}", gateway_port if index == 1 else free_port())
        for index in range(1, gateways + 1)
    ]
    return processes


def write_topology(processes: list[ServiceProcess], path: Path) -> Path:
    """Each service remote over HTTP, at every one of its replicas' URLs."""
    lines = []
    services = dict.fromkeys(p.service for p in processes if p.service != GATEWAY)
    for service in services:
        urls = ", ".join(f'"{p.url}"' for p in processes if p.service == service)
        lines += [f"[services.{service}]", "local = false", 'binding = "http"']
        lines += [f"urls = [{urls}]", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def write_scrape_targets(processes: list[ServiceProcess], path: Path) -> Path:
    """Every process's /metrics as Prometheus file-based discovery reads it: one target group
    per process, labelled ``job`` (colony), ``service`` and ``instance`` (its name, which a
    restart keeps; its port changes at every start of the topology). Written whole, then
    renamed, so Prometheus never reads half of it."""
    groups = [
        {
            "targets": [f"127.0.0.1:{p.port}"],
            "labels": {"job": "colony", "service": p.service, "instance": p.instance},
        }
        for p in processes
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(groups, indent=2) + "\n")
    os.replace(partial, path)
    return path
