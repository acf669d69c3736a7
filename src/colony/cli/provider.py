"""``colony provider``: run the payment-provider simulator and tune how it misbehaves.

Every command finds the simulator where the marketplace does, at ``COLONY_PAYMENT_PROVIDER_URL``
(``payment_provider_url``): a setting of its own would let ``set`` tune one provider while
the marketplace pays through another. ``--url`` still names any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

from colony.cli.http import request_json
from colony.platform.config import Settings
from colony.platform.logging import configure_logging

app = typer.Typer(help="The payment-provider simulator.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="The simulator's address (default: COLONY_PAYMENT_PROVIDER_URL)."),
]


def _configured_url() -> str:
    return Settings.from_env().payment_provider_url


def _call(url: str | None, method: str, path: str, body: Any = None) -> Any:
    return request_json(url or _configured_url(), method, path, "payment provider", body)


def _show(value: Any) -> None:
    out.print_json(json.dumps(value))


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default: COLONY_PAYMENT_PROVIDER_URL's)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on (default: COLONY_PAYMENT_PROVIDER_URL's).", min=1, max=65535
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where its SQLite file lives (default: COLONY_DATA_DIR)."),
    ] = None,
) -> None:
    """Run the simulator in this process until Ctrl-C."""
    from colony.payment_provider.server import run

    settings = Settings.from_env()
    configured = urlsplit(settings.payment_provider_url)
    host = host or configured.hostname or "127.0.0.1"
    port = port or configured.port or 80
    configure_logging(settings.log_level, settings.log_json)
    err.print(f"Payment provider on http://{host}:{port} — Ctrl-C to stop.")
    run(host, port, data_dir or settings.data_dir)


@app.command()
def status(url: UrlOption = None) -> None:
    """Print the current behaviour."""
    _show(_call(url, "GET", "/admin/behaviour"))


@app.command()
def stats(url: UrlOption = None) -> None:
    """Print request counters and the money authorized, captured and refunded."""
    _show(_call(url, "GET", "/admin/stats"))


@app.command("set")
def set_behaviour(
    url: UrlOption = None,
    latency_ms_p50: Annotated[
        float | None, typer.Option(help="Median added latency (lognormal), ms.")
    ] = None,
    latency_ms_p99: Annotated[
        float | None, typer.Option(help="99th percentile of added latency, ms.")
    ] = None,
    decline_rate: Annotated[
        float | None, typer.Option(help="Share of authorizations declined [0-1].")
    ] = None,
    error_rate: Annotated[float | None, typer.Option(help="Share answered 500/503 [0-1].")] = None,
    timeout_rate: Annotated[
        float | None, typer.Option(help="Share that hang, before or after the effect [0-1].")
    ] = None,
    outage: Annotated[
        bool | None, typer.Option("--outage/--no-outage", help="Refuse everything with 503.")
    ] = None,
    garbage_rate: Annotated[
        float | None, typer.Option(help="Share of successes answered with a body not JSON [0-1].")
    ] = None,
    wrong_amount_rate: Annotated[
        float | None, typer.Option(help="Share of successes naming another amount [0-1].")
    ] = None,
    wrong_state_rate: Annotated[
        float | None, typer.Option(help="Share of successes naming another status [0-1].")
    ] = None,
    oversize_rate: Annotated[
        float | None, typer.Option(help="Share of successes padded to 1 MiB [0-1].")
    ] = None,
    slow_body_rate: Annotated[
        float | None,
        typer.Option(help="Share of successes that send half the body, then hang [0-1]."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable randomness.")] = None,
) -> None:
    """Change some of the behaviour; the rest stays as it is. A bad answer (garbage, wrong
    amount or state, oversize, slow body) spoils a success after its effect took place."""
    changes = {
        "decline_rate": decline_rate,
        "error_rate": error_rate,
        "timeout_rate": timeout_rate,
        "outage": outage,
        "garbage_rate": garbage_rate,
        "wrong_amount_rate": wrong_amount_rate,
        "wrong_state_rate": wrong_state_rate,
        "oversize_rate": oversize_rate,
        "slow_body_rate": slow_body_rate,
        "seed": seed,
    }
    latency = {"p50_ms": latency_ms_p50, "p99_ms": latency_ms_p99}
    if all(v is None for v in (*changes.values(), *latency.values())):
        err.print("[yellow]Nothing to change: give at least one option (see --help).")
        raise typer.Exit(2)
    behaviour = _call(url, "GET", "/admin/behaviour")
    behaviour.update({k: v for k, v in changes.items() if v is not None})
    behaviour["latency"].update({k: v for k, v in latency.items() if v is not None})
    _show(_call(url, "PUT", "/admin/behaviour", behaviour))


@app.command()
def reset(url: UrlOption = None) -> None:
    """Back to the default behaviour (no faults) and zeroed counters; the books are kept."""
    _show(_call(url, "POST", "/admin/reset"))
