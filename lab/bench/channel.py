"""`mitmlab bench channel`: the lab channel against Python's TLS 1.3 on the same loopback, same loop.

Handshakes per second (RSA key transport and ECDHE) and record throughput (AES-GCM and AES-CTR+HMAC)
for the lab channel, and the same for `ssl` with the same RSA-2048 certificate and CA. Both sides of
every connection run in one asyncio loop, so the numbers include the client's and the server's work.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from lab.bench.measure import Result, interleaved_rates
from lab.channel.connection import ClientConfig, ClientConnection, ServerConfig, ServerConnection
from lab.channel.frames import MAX_RECORD_PLAINTEXT
from lab.channel.protections import RECOMMENDED
from lab.channel.suites import KeyExchange, RecordProtection, Suite
from lab.roles.transport import ChannelStream
from lab.state import SERVER_NAME, StateDir

TIMEOUT = 30.0


class Bench:
    def __init__(self, state: StateDir, handshakes: int, megabytes: int, repeats: int) -> None:
        self.state = state
        self.handshakes = handshakes
        self.total = megabytes * 2**20
        self.repeats = repeats
        leaf = state.server_leaf()
        self.leaf = leaf
        self.trust = state.trust()
        self.tls_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls_server.load_cert_chain(state.server_cert, state.server_key)
        self.tls_client = ssl.create_default_context(cafile=state.ca_cert)
        self.tls_client.minimum_version = ssl.TLSVersion.TLSv1_3
        # TLS 1.2 with AES-CBC + HMAC-SHA256: two passes over each record, like the lab's CTR+HMAC.
        self.tls12_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls12_server.load_cert_chain(state.server_cert, state.server_key)
        self.tls12_server.maximum_version = ssl.TLSVersion.TLSv1_2
        self.tls12_server.set_ciphers("AES128-SHA256")
        self.tls12_client = ssl.create_default_context(cafile=state.ca_cert)
        self.tls12_client.maximum_version = ssl.TLSVersion.TLSv1_2
        self.tls12_client.set_ciphers("AES128-SHA256")

    @property
    def steps(self) -> int:
        return 7 * self.repeats

    async def run(self, tick: Callable[[], None]) -> list[Result]:
        rsa = Suite(RecordProtection.AES128_GCM, KeyExchange.RSA)
        ecdhe = Suite(RecordProtection.AES128_GCM, KeyExchange.ECDHE)
        ctr_hmac = Suite(RecordProtection.AES128_CTR_HMAC_SHA256, KeyExchange.ECDHE)
        n, total = self.handshakes, self.total
        tls13_hs, tls13_bulk, tls12_bulk = "tls13 handshakes", "tls13 AES-GCM", "tls12 AES-CBC+HMAC-SHA256"
        plan: list[tuple[str, Callable[[], Awaitable[float]], str, str | None]] = [
            (tls13_hs, lambda: self._tls_handshakes(n), "/s", None),
            ("lab RSA handshakes", lambda: self._lab(rsa, n, 0), "/s", tls13_hs),
            ("lab ECDHE handshakes", lambda: self._lab(ecdhe, n, 0), "/s", tls13_hs),
            (tls13_bulk, lambda: self._tls_bulk(total), "MB/s", None),
            ("lab AES-GCM", lambda: self._lab(ecdhe, 1, total), "MB/s", tls13_bulk),
            (tls12_bulk, lambda: self._tls_bulk(total, tls12=True), "MB/s", None),
            ("lab AES-CTR+HMAC-SHA256", lambda: self._lab(ctr_hmac, 1, total), "MB/s", tls12_bulk),
        ]
        results = []
        rates = await interleaved_rates({name: work for name, work, _, _ in plan}, self.repeats, tick)
        for name, _, unit, reference in plan:
            results.append(
                Result(name, rates[name] / 2**20 if unit == "MB/s" else rates[name], unit, reference)
            )
        return results

    async def _lab(self, suite: Suite, connections: int, payload: int) -> float:
        """`connections` handshakes with `suite`, each followed by `payload` bytes client -> server."""
        server, port = await self.channel_sink(suite)
        async with server:
            return await self.channel_send(port, suite, connections, payload)

    async def channel_sink(self, suite: Suite) -> tuple[asyncio.Server, int]:
        """A lab-channel server that completes handshakes and reads records until the client is done."""
        leaf = self.leaf
        config = ServerConfig(RECOMMENDED, leaf.chain, leaf.private_key, suites=(suite,))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = ChannelStream(ServerConnection(config), reader, writer)
            await stream.handshake(TIMEOUT)
            while await stream.receive(TIMEOUT) is not None:
                pass
            await stream.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        return server, port

    async def channel_send(self, port: int, suite: Suite, connections: int, payload: int) -> float:
        config = ClientConfig(RECOMMENDED, SERVER_NAME, self.trust, suites=(suite,))
        record = bytes(MAX_RECORD_PLAINTEXT)
        for _ in range(connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            stream = ChannelStream(ClientConnection(config), reader, writer)
            await stream.handshake(TIMEOUT)
            for _ in range(payload // len(record)):
                await stream.send(record)
            writer.write_eof()
            await reader.read()  # the server has read everything and closed
            await stream.close()
        return payload or connections

    async def _tls_handshakes(self, connections: int) -> float:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls_server)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for _ in range(connections):
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=self.tls_client, server_hostname=SERVER_NAME
                )
                writer.close()
                await writer.wait_closed()
        return connections

    async def _tls_bulk(self, payload: int, *, tls12: bool = False) -> float:
        server_context, client_context = (
            (self.tls12_server, self.tls12_client) if tls12 else (self.tls_server, self.tls_client)
        )
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received = 0
            while received < payload and (chunk := await reader.read(2**16)):
                received += len(chunk)
            done.set()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        record = bytes(MAX_RECORD_PLAINTEXT)
        async with server:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname=SERVER_NAME
            )
            for _ in range(payload // len(record)):
                writer.write(record)
                await writer.drain()
            await done.wait()
            writer.close()
        return payload
