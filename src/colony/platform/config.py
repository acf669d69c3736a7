"""Settings from environment variables (``COLONY_*``), with defaults for a laptop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("var/data")
    instance: str = "local"
    """This process's name among replicas of a service; a restart under the same name takes
    its unfinished work straight back (its sagas' leases)."""
    host: str = "127.0.0.1"
    port: int = 8080
    topology_file: Path | None = None
    log_level: str = "info"
    log_json: bool | None = None
    access_log: bool = False
    trace_sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    """The share of traces recorded, decided where each begins and followed by every process
    it reaches; traces with an error or a compensation are kept whatever it is."""
    trace_store_traces: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    """The most traces the console's store (in the gateway's process) keeps; the oldest go
    first."""
    trace_store_age_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """How long a trace stays in the console's store after its last span arrived."""
    trace_store_spans: Annotated[int, msgspec.Meta(ge=1)] = 250_000
    """The most spans the console's store keeps, of all its traces: its memory's bound."""
    traces_url: str | None = None
    """Where a process other than the gateway's sends its spans: the gateway (``colony up
    --distributed`` sets it). Unset: only the gateway's own process is traced into the
    console (and every process into ``OTEL_EXPORTER_OTLP_ENDPOINT``, when set)."""
    metrics_token: str | None = None
    """The bearer token a Prometheus elsewhere presents to scrape the gateway's ``/metrics``
    (unset: only a scraper on this machine may). Services' own ports serve theirs to any
    caller the network lets in."""
    fault_injection: bool = False
    """Serve ``/admin/faults`` (:mod:`colony.platform.faults`) so ``colony faults`` can break
    this process's links, consumers and clock. Off except for chaos runs."""
    token_ttl_seconds: int = 3600
    password_hash_cost: str = "standard"  # "standard" (OWASP) or "fast" (tests only)
    search_cache_seconds: float = 2.0
    max_body_bytes: int = 64 * 1024
    # The gateway's edge (``services/gateway/edge.py``); values out of range are refused.
    rate_limit_per_second: Annotated[float, msgspec.Meta(ge=0)] = 50.0
    """Requests a second each client may make at the gateway, on average (0: no limit). A
    client is the account of a bearer token the gateway has verified before, else the
    connection's address; past its limit it gets a 429 with ``Retry-After``."""
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1)] = 100
    """Requests a client may make at once after a quiet spell, before the rate applies."""
    rate_limit_exempt: str = "127.0.0.1,::1"
    """Addresses never rate-limited, comma-separated: by default this host's own, the
    operator's (benchmarks, load generators, probes). Behind a proxy on this host every client
    has the proxy's address: set this empty, or limit at the proxy."""
    gateway_max_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 512
    """Requests inside the gateway at once (0: no limit); past it and a full queue, a 503 with
    ``Retry-After: 1`` rather than an ever longer wait. Health and static files are exempt."""
    gateway_max_queue: Annotated[int, msgspec.Meta(ge=0)] = 128
    """Requests that may wait for a slot once ``gateway_max_concurrency`` are inside."""
    gateway_queue_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.005
    """How long one of them waits before it is shed (0: none wait): a burst, not a backlog."""
    search_stale_seconds: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    """How old an answer a search may be given, marked ``stale``, when the catalog cannot be
    asked (0: never; the search fails with a 503 instead)."""
    dsns: dict[str, str] = msgspec.field(default_factory=dict)
    """Each service's database (``COLONY_<SERVICE>_DSN``); unset: a SQLite file."""
    urls: dict[str, str] = msgspec.field(default_factory=dict)
    """Where callers reach a service placed elsewhere (``COLONY_<SERVICE>_URL``; several
    replicas' URLs comma-separated). With none, a service runs in the caller's process."""
    nats_url: str | None = None
    """NATS JetStream carries events between processes; unset: in-process delivery."""
    restart_backoff_seconds: float = 0.5
    """How long the supervisor waits before starting a process that exited; doubled while it
    keeps failing, up to 30 s."""
    # Checkout and what follows it.
    payment_provider_url: str = "http://127.0.0.1:8181"
    payment_timeout_seconds: float = 2.0
    marketplace_fee_bps: int = 1000  # the marketplace keeps 10 % of each seller's sale
    reservation_ttl_seconds: float = 900.0
    order_deadline_seconds: float = 600.0
    saga_step_timeout_seconds: float = 5.0
    saga_step_attempts: int = 5
    saga_lease_seconds: float = 15.0
    courier_step_seconds: float = 20.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    mail_sink_http_port: int = 8026
    mail_from: str = "Colony <no-reply@colony.example>"
    webhook_attempts: int = 5
    internal_hosts_allowed: str = ""
    """Hosts and networks that URLs users give (sellers' webhooks) may reach although they are
    inside — loopback, private, link-local and the like — comma-separated names, addresses
    and CIDRs, e.g. ``127.0.0.1`` for a test receiver on this machine. Empty (the default):
    such URLs are refused when given and when used (:mod:`colony.platform.outbound_addresses`)."""
    recommendations_timeout_seconds: float = 0.05
    # Resilience of calls between processes (see colony.platform.resilience).
    call_timeout_seconds: float = 2.5
    """One attempt of a call to another service; the request's deadline may cut it shorter."""
    request_deadline_seconds: float = 10.0
    """What the gateway gives a request, carried down every call it makes."""
    saga_step_patience_seconds: float = 120.0
    """How long a checkout step waits for a dependency that is down or restarting, within the
    order's deadline, before the saga gives up and compensates."""
    resilience: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    """Per-dependency overrides of the call policies, as JSON in ``COLONY_RESILIENCE``, e.g.
    ``{"payment-provider": {"timeout": 1.5, "breaker.open_seconds": 5}}``."""
    ready_timeout_seconds: float = 0.5
    """How long a readiness probe waits for all the services it checks (asked at once); a
    service that has not answered by then counts as down. Well under the 2 s probe timeout
    of the Kubernetes manifests, so a frozen dependency cannot leave the probe unanswered."""
    keys_dir: Path | None = None
    """Where a process finds its service identity's signing key and the trust bundle of every
    service's public keys (default: ``keys`` in the data dir; on Kubernetes, a mounted
    Secret). A process whose calls stay in-process keeps its keys in memory instead."""
    service_token_ttl_seconds: Annotated[int, msgspec.Meta(ge=30, le=3600)] = 300
    """Lifetime of the signed token that names caller, callee and actor on a call between
    processes; a caller reuses one until shortly before it expires."""

    def dsn_for(self, service: str) -> str:
        """A service's database: configured per service, else a SQLite file in the data dir."""
        return self.dsns.get(service) or f"sqlite:///{self.data_dir / (service + '.db')}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        fields = {f.name: f for f in msgspec.structs.fields(cls)}
        for name in fields:
            raw = env.get(f"COLONY_{name.upper()}")
            if raw is not None and name not in _PER_SERVICE:
                values[name] = msgspec.json.decode(raw) if name in _JSON else raw
        for name, suffix in _PER_SERVICE.items():
            values[name] = {
                key[len("COLONY_") : -len(suffix)].lower(): value
                for key, value in env.items()
                if key.startswith("COLONY_")
                and key.endswith(suffix)
                # COLONY_NATS_URL and the like are settings of their own, not a service's.
                and key[len("COLONY_") :].lower() not in fields
                and value
            }
        values.update(overrides)
        return msgspec.convert(values, cls, strict=False, dec_hook=_decode_path)


_PER_SERVICE = {"dsns": "_DSN", "urls": "_URL"}
_JSON = {"resilience"}


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)
