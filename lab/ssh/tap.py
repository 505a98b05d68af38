"""`eavesdrop` on the SSH stack: a passive attacker on the path, which relays TCP unchanged and keeps
every byte it saw. What it can read is SSH's clear part (both version banners, the key exchange
offers); the password and the command travel encrypted (the `encryption` protection, always on in
SSH)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final, Literal

from lab.net import CHUNK, Address

TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class BytesSeen:
    connection: int
    direction: Literal["to server", "to client"]
    data: bytes


class SshTap:
    """Listens, connects each client to `upstream`, copies both ways and records every chunk."""

    def __init__(self, upstream: Address, timeout: float = TIMEOUT) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.records: list[BytesSeen] = []
        self._server: asyncio.Server | None = None
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self.serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()

    def seen(self, direction: Literal["to server", "to client"]) -> bytes:
        """Everything seen in one direction, all connections in order."""
        return b"".join(record.data for record in self.records if record.direction == direction)

    async def serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """Relay one client's connection (accepted by `start`, or elsewhere) until both ends close."""
        self._count += 1
        number = self._count
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port), self.timeout
            )
        except (OSError, TimeoutError):
            client_writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._copy(number, "to server", client_reader, server_writer),
                self._copy(number, "to client", server_reader, client_writer),
            )
        finally:
            for writer in (client_writer, server_writer):
                writer.close()
            self._tasks.discard(task)

    async def _copy(
        self,
        number: int,
        direction: Literal["to server", "to client"],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                self.records.append(BytesSeen(number, direction, data))
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
