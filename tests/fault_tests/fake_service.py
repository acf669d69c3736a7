"""A stand-in for a service process, for the injector's tests: answers ``/health/live`` and
``/health/ready`` on a port, and with a PostgreSQL DSN is ready only while ``SELECT 1``
works on the connection it keeps (and opens again when it is cut).

    python fake_service.py PORT [DSN]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


async def main(port: int, dsn: str | None) -> None:
    connection: list[Any] = []

    async def database_ok() -> bool:
        if dsn is None:
            return True
        import asyncpg

        try:
            if not connection:
                connection.append(await asyncpg.connect(dsn, timeout=1))
            await connection[0].fetchval("SELECT 1", timeout=1)
        except Exception:
            if connection:
                connection.pop().terminate()
            return False
        return True

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        path = request.split()[1] if len(request.split()) > 1 else b"/"
        ok = path == b"/health/live" or (path == b"/health/ready" and await database_ok())
        status = b"200 OK" if ok else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
