"""Settings from environment variables (``COLONY_*``), with defaults for a laptop."""

from __future__ import annotations

import os
from pathlib import Path

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
    token_ttl_seconds: int = 3600
    password_hash_cost: str = "standard"  # "standard" (OWASP) or "fast" (tests only)
    search_cache_seconds: float = 2.0
    max_body_bytes: int = 64 * 1024
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
    """NATS JetStream carries events between processes; unset: in-process delivery."""
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
    recommendations_timeout_seconds: float = 0.05
    ready_timeout_seconds: float = 0.5
    """How long a readiness probe waits for all the services it checks (asked at once); a
    service that has not answered by then counts as down. Well under the 2 s probe timeout
    of the Kubernetes manifests, so a frozen dependency cannot leave the probe unanswered."""

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
                values[name] = raw
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


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)
