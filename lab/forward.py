"""A TCP forwarder: how the compose lab publishes mitmweb's live view without putting the attacker on a
network that reaches out. The `live` service sits on both networks and only forwards."""

from __future__ import annotations

import asyncio
import signal

from lab.net import pipe


async def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Forward every connection to `listen` to `target`, until SIGTERM or SIGINT."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()  # the target is not up (yet): the browser retries
            return
        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()
            writer.close()

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(serve, *listen)
    async with server:
        await stop.wait()
