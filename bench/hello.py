"""A bare Starlette hello-world on the same embedded server: the ceiling to compare against."""

from __future__ import annotations

import asyncio
import signal
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from colony.platform.web.server import HttpServer


async def hello(request: Request) -> Response:
    return Response(b'{"hello":"world"}', media_type="application/json")


async def main(port: int) -> None:
    server = HttpServer(Starlette(routes=[Route("/", hello)]), "127.0.0.1", port)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
