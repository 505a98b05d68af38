"""A real bank server on a loopback port for the duration of an async test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lab.channel.protections import RECOMMENDED, Protections
from lab.roles.server import BankServer
from lab.roles.transport import DEFAULT_TIMEOUTS, Timeouts
from lab.state import StateDir


@asynccontextmanager
async def running_server(
    state: StateDir, protections: Protections = RECOMMENDED, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[int]:
    """Yields the bound port; stops the server (and its open sessions) afterwards."""
    server = BankServer(state, protections, timeouts)
    port = await server.start("127.0.0.1", 0)
    task = asyncio.create_task(server.serve_forever())
    try:
        yield port
    finally:
        task.cancel()
        await server.stop()


async def raw_exchange(port: int, data: bytes, *, close: bool = True, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes to the server and return whatever it answers before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()
