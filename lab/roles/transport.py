"""The thin asyncio side of the lab channel: moves bytes between a socket and a sans-IO endpoint.

Everything a protection decides happens in `lab.channel`; this module only reads, writes, waits with a
deadline and, on any channel error, sends the endpoint's alert before closing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from lab.channel.connection import (
    ApplicationData,
    ClientConnection,
    HandshakeComplete,
    SentRecord,
    ServerConnection,
)
from lab.channel.errors import ChannelError, PeerRefused, PeerStalled

READ_SIZE = 65536


@dataclass(frozen=True)
class Timeouts:
    handshake: float = 10.0
    """A peer that stalls mid-handshake is cut off after this many seconds."""
    idle: float = 60.0
    """A session with no record for this long is closed."""


DEFAULT_TIMEOUTS = Timeouts()


class ChannelStream:
    def __init__(
        self,
        conn: ClientConnection | ServerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self._pending: deque[HandshakeComplete | ApplicationData] = deque()

    async def handshake(self, timeout: float) -> HandshakeComplete:
        if isinstance(self.conn, ClientConnection):
            self.conn.start()
            await self._flush()
        event = await self._next_within(timeout, "handshake")
        # Before the handshake completes the endpoint yields nothing else, and an early EOF raises.
        assert isinstance(event, HandshakeComplete)
        return event

    async def send(self, data: bytes) -> SentRecord:
        record = self.conn.send_application_data(data)
        await self._flush()
        return record

    async def receive(self, timeout: float) -> ApplicationData | None:
        """The next record, or None when the peer closed cleanly between records."""
        event = await self._next_within(timeout, "record")
        assert not isinstance(event, HandshakeComplete)  # the handshake completes once
        return event

    async def _next_within(self, timeout: float, step: str) -> HandshakeComplete | ApplicationData | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._next_event()
        except TimeoutError:
            error = PeerStalled(f"the peer sent nothing usable within {timeout:g} s", step=step)
            await self.fail(error)
            raise error from None

    async def _next_event(self) -> HandshakeComplete | ApplicationData | None:
        while not self._pending:
            if self.conn.deferred_error is not None:  # bad bytes after good ones: now the error
                await self._flush()
                await self.close()
                raise self.conn.deferred_error
            try:
                data = await self.reader.read(READ_SIZE)
            except ConnectionError:
                data = b""
            try:
                if not data:
                    self.conn.receive_eof()
                    return None
                self._pending.extend(self.conn.receive_data(data))
            except PeerRefused:
                await self.close()
                raise
            except ChannelError:
                await self._flush()
                await self.close()
                raise
            await self._flush()
        return self._pending.popleft()

    async def fail(self, error: ChannelError) -> None:
        """Tell the peer why this side gives up, then close."""
        self.conn.abort(error)
        await self._flush()
        await self.close()

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)
            with contextlib.suppress(ConnectionError):  # the peer is gone; the next read reports it
                await self.writer.drain()

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
