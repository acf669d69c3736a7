"""``colony mail``: run the development mail sink and read what the marketplace sent."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from colony.cli.http import request_json
from colony.mail_sink import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT
from colony.platform.config import Settings
from colony.platform.logging import configure_logging

app = typer.Typer(help="The development mail sink.", no_args_is_help=True)
err = Console(stderr=True)


def _out() -> Console:
    # Made per command, not at import, so it measures the terminal (COLUMNS) it prints to.
    return Console()


UrlOption = Annotated[
    str,
    typer.Option("--url", help="The sink's HTTP address.", envvar="COLONY_MAIL_SINK_URL"),
]
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"


def _call(url: str, method: str, path: str) -> Any:
    return request_json(url, method, path, "mail sink")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    smtp_port: Annotated[
        int, typer.Option(help="SMTP port to accept mail on.", min=1, max=65535)
    ] = DEFAULT_SMTP_PORT,
    http_port: Annotated[
        int, typer.Option(help="HTTP port of the listing.", min=1, max=65535)
    ] = DEFAULT_HTTP_PORT,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where its SQLite file lives (default: COLONY_DATA_DIR)."),
    ] = None,
) -> None:
    """Run the sink in this process until Ctrl-C."""
    from colony.mail_sink.server import run

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)
    err.print(
        f"Mail sink: SMTP on {host}:{smtp_port}, messages on http://{host}:{http_port}/messages"
        " — Ctrl-C to stop."
    )
    run(host, smtp_port, http_port, data_dir or settings.data_dir)


@app.command("list")
def list_messages(
    url: UrlOption = DEFAULT_URL,
    to: Annotated[str | None, typer.Option("--to", help="Only messages to this address.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Received messages, newest first."""
    query = {"limit": str(limit), **({"to": to} if to else {})}
    items = _call(url, "GET", "/messages?" + urllib.parse.urlencode(query))["items"]
    out = _out()
    if as_json:
        out.print_json(json.dumps(items))
        return
    if not items:
        out.print("No messages.")
        return
    table = Table(show_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("received (UTC)", no_wrap=True)
    table.add_column("to", overflow="fold")
    table.add_column("subject", overflow="fold")
    for item in items:
        received = item["received_at"]
        table.add_row(
            item["id"], f"{received[:10]} {received[11:19]}", ", ".join(item["to"]), item["subject"]
        )
    out.print(table)


@app.command()
def show(
    message_id: Annotated[str, typer.Argument(help="A message id from `colony mail list`.")],
    url: UrlOption = DEFAULT_URL,
    raw: Annotated[bool, typer.Option("--raw", help="Print the message as received.")] = False,
) -> None:
    """One message: its headers and text body."""
    message = _call(url, "GET", "/messages/" + urllib.parse.quote(message_id, safe=""))
    out = _out()
    if raw:
        out.print(message["raw"], markup=False, highlight=False)
        return
    for name, value in message["headers"]:
        out.print(f"[bold]{name}:[/] ", end="")
        out.print(value, markup=False, highlight=False)
    out.print()
    out.print(message["text"], markup=False, highlight=False)


@app.command()
def clear(url: UrlOption = DEFAULT_URL) -> None:
    """Delete every received message."""
    deleted = _call(url, "DELETE", "/messages")["deleted"]
    _out().print(f"Deleted {deleted} message{'s' if deleted != 1 else ''}.")
