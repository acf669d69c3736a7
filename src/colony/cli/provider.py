"""``colony provider``: run the payment-provider simulator and tune how it misbehaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from colony.cli.http import request_json
from colony.payment_provider.server import DEFAULT_PORT
from colony.platform.config import Settings
from colony.platform.logging import configure_logging

app = typer.Typer(help="The payment-provider simulator.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

UrlOption = Annotated[
    str, typer.Option("--url", help="The simulator's address.", envvar="COLONY_PROVIDER_URL")
]
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def _call(url: str, method: str, path: str, body: Any = None) -> Any:
    return request_json(url, method, path, "payment provider", body)


def _show(value: Any) -> None:
    out.print_json(json.dumps(value))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = DEFAULT_PORT,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where its SQLite file lives (default: COLONY_DATA_DIR)."),
    ] = None,
) -> None:
    """Run the simulator in this process until Ctrl-C."""
    from colony.payment_provider.server import run

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)
    err.print(f"Payment provider on http://{host}:{port} — Ctrl-C to stop.")
    run(host, port, data_dir or settings.data_dir)


@app.command()
def status(url: UrlOption = DEFAULT_URL) -> None:
    """Print the current behaviour."""
    _show(_call(url, "GET", "/admin/behaviour"))


@app.command()
def stats(url: UrlOption = DEFAULT_URL) -> None:
    """Print request counters and the money authorized, captured and refunded."""
    _show(_call(url, "GET", "/admin/stats"))


@app.command("set")
def set_behaviour(
    url: UrlOption = DEFAULT_URL,
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
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable randomness.")] = None,
) -> None:
    """Change some of the behaviour; the rest stays as it is."""
    changes = {
        "decline_rate": decline_rate,
        "error_rate": error_rate,
        "timeout_rate": timeout_rate,
        "outage": outage,
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
def reset(url: UrlOption = DEFAULT_URL) -> None:
    """Back to the default behaviour (no faults) and zeroed counters; the books are kept."""
    _show(_call(url, "POST", "/admin/reset"))
