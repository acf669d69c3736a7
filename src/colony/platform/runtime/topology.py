"""Topology: where each service runs and how callers reach it. Configuration, not code.

A topology file is TOML::

    [services.catalog]
    local = true                      # this process hosts it
    binding = "http"                  # callers reach it over HTTP ...
    url = "http://127.0.0.1:8101"     # ... here (and, being local, it is served here)

    [services.orders]
    local = false                     # another process hosts it: three replicas,
    binding = "http"                  # which callers balance across
    urls = ["http://127.0.0.1:8111", "http://127.0.0.1:8112", "http://127.0.0.1:8113"]

Services not named are local and in-process: the one-process marketplace. Without a file,
``COLONY_<SERVICE>_URL`` variables place services elsewhere (as on Kubernetes, where each URL
is a Service's name).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec


class Placement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    local: bool = True
    binding: Literal["inprocess", "http"] = "inprocess"
    url: str | None = None
    urls: tuple[str, ...] = ()
    """Every replica's URL, when there are several."""

    def __post_init__(self) -> None:
        if self.binding == "http" and not self.addresses:
            raise ValueError("an HTTP binding needs a url")
        if self.binding == "inprocess" and not self.local:
            raise ValueError("a remote service can only be reached over HTTP")

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.urls or ((self.url,) if self.url else ())

    @property
    def replicated(self) -> bool:
        """Whether several processes run this service (and so share its database)."""
        return len(self.addresses) > 1


class Topology(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    services: dict[str, Placement] = {}

    def placement(self, service: str) -> Placement:
        return self.services.get(service) or Placement()

    @classmethod
    def load(cls, path: Path) -> Topology:
        return msgspec.convert(tomllib.loads(path.read_text()), cls)

    @classmethod
    def from_urls(cls, urls: dict[str, str]) -> Topology:
        """Services with a URL (comma-separated for replicas) are elsewhere; the rest here."""
        return cls(
            services={
                name: Placement(
                    local=False,
                    binding="http",
                    urls=tuple(u.strip() for u in value.split(",") if u.strip()),
                )
                for name, value in urls.items()
            }
        )

    def hosting(self, service: str | None, every: Iterable[str]) -> Topology:
        """This topology as seen by the process that hosts ``service`` alone (None: no service,
        as the gateway's process): that one in-process, every other one remote."""
        services = {}
        for name in every:
            placement = self.placement(name)
            if name == service:
                # Here, and where its other replicas are.
                services[name] = Placement(urls=placement.addresses)
                continue
            if not placement.addresses:
                raise ValueError(
                    f"no address for {name}: give it a URL (COLONY_{name.upper()}_URL"
                    " or the topology file)"
                )
            services[name] = Placement(local=False, binding="http", urls=placement.addresses)
        return Topology(services=services)

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
