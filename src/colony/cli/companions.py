"""The processes ``colony up`` runs beside the marketplace: the payment-provider simulator and
the mail sink, each in its own process as a third party would be."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from colony.distributed.supervisor import terminate
from colony.platform.config import Settings
from colony.platform.web.server import ensure_port_free, wait_for_port


@dataclass(frozen=True)
class Companion:
    name: str
    port: int
    command: list[str]


def companions(settings: Settings) -> list[Companion]:
    provider = urlsplit(settings.payment_provider_url)
    data_dir = str(settings.data_dir)
    return [
        Companion(
            "payment provider",
            provider.port or 80,
            [
                sys.executable,
                "-m",
                "colony.payment_provider",
                "--host",
                provider.hostname or "127.0.0.1",
                "--port",
                str(provider.port or 80),
                "--data-dir",
                data_dir,
            ],
        ),
        Companion(
            "mail sink",
            settings.smtp_port,
            [
                sys.executable,
                "-m",
                "colony.mail_sink",
                "--smtp-port",
                str(settings.smtp_port),
                "--http-port",
                str(settings.mail_sink_http_port),
                "--data-dir",
                data_dir,
            ],
        ),
    ]


@contextlib.asynccontextmanager
async def running_companions(settings: Settings) -> AsyncIterator[list[str]]:
    """Start each companion whose port is free (one already listening is used as it is);
    yields what was started, and stops it on the way out."""
    started: list[tuple[Companion, asyncio.subprocess.Process]] = []
    notes = []
    try:
        for companion in companions(settings):
            try:
                ensure_port_free("127.0.0.1", companion.port)
            except OSError:
                notes.append(f"{companion.name}: already running on port {companion.port}")
                continue
            process = await asyncio.create_subprocess_exec(*companion.command)
            started.append((companion, process))
            await wait_for_port("127.0.0.1", companion.port, within=20.0)
            notes.append(f"{companion.name}: started on port {companion.port}")
        yield notes
    finally:
        for companion, process in reversed(started):
            await terminate(process, companion.name)
