"""Topology: where each service runs and how callers reach it. Configuration, not code.

A topology file is TOML::

    [services.catalog]
    local = true                      # this process hosts it
    binding = "http"                  # callers reach it over HTTP ...
    url = "http://127.0.0.1:8101"     # ... here (and, being local, it is served here)

Services not named are local and in-process: the one-process marketplace.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import msgspec


class Placement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    local: bool = True
    binding: Literal["inprocess", "http"] = "inprocess"
    url: str | None = None

    def __post_init__(self) -> None:
        if self.binding == "http" and not self.url:
            raise ValueError("an HTTP binding needs a url")
        if self.binding == "inprocess" and not self.local:
            raise ValueError("a remote service can only be reached over HTTP")


class Topology(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    services: dict[str, Placement] = {}

    def placement(self, service: str) -> Placement:
        return self.services.get(service) or Placement()

    @classmethod
    def load(cls, path: Path) -> Topology:
        return msgspec.convert(tomllib.loads(path.read_text()), cls)

    @classmethod
    def one_process(cls) -> Topology:
        return cls()

    @classmethod
    def local_over_http(cls, ports: dict[str, int], host: str = "127.0.0.1") -> Topology:
        """Every service in this process, each behind its own HTTP server: the HTTP binding."""
        return cls(
            services={
                name: Placement(binding="http", url=f"http://{host}:{port}")
                for name, port in ports.items()
            }
        )
