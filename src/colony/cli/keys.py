"""``colony keys``: the service identities' signing keys and the bundle every process trusts.

``colony up --distributed`` makes them itself (``keys`` in the data directory); these
commands are for the other places keys come from: a directory to turn into a Kubernetes
Secret or a compose volume, and rotating keys while everything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from colony.composition import IDENTITIES
from colony.platform.config import Settings
from colony.platform.trust import provision, rotate
from colony.platform.trust.keys import BUNDLE

app = typer.Typer(help="Service identities' signing keys.", no_args_is_help=True)
err = Console(stderr=True)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="The keys directory (default: COLONY_KEYS_DIR, else keys in the data directory).",
    ),
]


def _directory(path: Path | None) -> Path:
    settings = Settings.from_env()
    return path or settings.keys_dir or settings.data_dir / "keys"


def _identities(only: list[str] | None) -> list[str]:
    if not only:
        return list(IDENTITIES)
    unknown = sorted(set(only) - set(IDENTITIES))
    if unknown:
        err.print(f"Unknown identity: {', '.join(unknown)} (known: {', '.join(IDENTITIES)}).")
        raise typer.Exit(2)
    return only


@app.command()
def init(directory: DirOption = None) -> None:
    """Give every identity that has none a key, and trust it (keys already there are kept)."""
    path = _directory(directory)
    try:
        added = provision(path, IDENTITIES)
    except (OSError, ValueError) as exc:
        err.print(f"Cannot write keys in {path}: {exc}")
        raise typer.Exit(2) from None
    print(f"{len(added)} key(s) made in {path}" + (f": {', '.join(added)}" if added else "."))


@app.command("rotate")
def rotate_command(
    directory: DirOption = None,
    identity: Annotated[
        list[str] | None, typer.Option("--identity", help="Only these (repeatable).")
    ] = None,
    overlap: Annotated[
        float,
        typer.Option(
            min=60.0,
            help="Seconds the old keys stay trusted: longer than a service token lives.",
        ),
    ] = 900.0,
) -> None:
    """New keys for running processes, without a failed call: the new public keys are trusted
    first, then, once every process has reloaded the bundle, the new keys sign."""
    path = _directory(directory)
    if not (path / BUNDLE).exists():
        err.print(f"No keys in {path}: run `colony keys init` first.")
        raise typer.Exit(2)
    names = _identities(identity)
    try:
        rotate(path, names, overlap)
    except (OSError, ValueError) as exc:
        err.print(f"Cannot rotate the keys in {path}: {exc}")
        raise typer.Exit(2) from None
    print(f"Rotated {len(names)} key(s) in {path}; the old ones are trusted {overlap:g} s more.")


@app.command("list")
def list_command(directory: DirOption = None) -> None:
    """The trusted keys: identity, key id, and until when a retired one is trusted."""
    path = _directory(directory)
    try:
        bundle = json.loads((path / BUNDLE).read_text())
    except (OSError, ValueError):
        err.print(f"No trust bundle in {path}.")
        raise typer.Exit(2) from None
    for key in bundle.get("keys", []):
        retired = f"  retired, trusted until {key['not_after']:.0f}" if key.get("not_after") else ""
        print(f"{key.get('colony_identity', '?'):<16} {key.get('kid', '?')}{retired}")
