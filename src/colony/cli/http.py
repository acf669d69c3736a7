"""JSON over HTTP for the commands that talk to a running companion (the provider simulator,
the mail sink): a refusal or no answer ends the command with a message, exit code 1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import typer
from rich.console import Console

_TIMEOUT_SECONDS = 5.0
_err = Console(stderr=True)


def request_json(url: str, method: str, path: str, what: str, body: Any = None) -> Any:
    """One request to ``url + path``; ``what`` names the server in error messages."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        _err.print(f"[red]The {what} refused ({exc.code}): {detail}")
        raise typer.Exit(1) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        _err.print(f"[red]No {what} answers at {url}: {reason}")
        raise typer.Exit(1) from None
