"""`mitmlab bench proxy`: what the attacker in the middle costs, measured against going direct.

Session latency: one full bank session (handshake, log in, transfer, balance) straight to the server,
and the same through the attacker (mitmproxy, reverse mode, no attack loaded), alternating, median of
each. Throughput: 16 KiB records through the attacker and direct. Server, attacker and client share one
process and one event loop, so the attacker's cost is not hidden on the second core.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

from lab.bench.channel import Bench
from lab.bench.measure import Result, interleaved_rates
from lab.channel.protections import RECOMMENDED
from lab.channel.suites import KeyExchange, RecordProtection, Suite
from lab.roles.attacker import AttackerRole
from lab.roles.client import Command, run_session
from lab.roles.server import BankServer
from lab.state import StateDir

SESSION = [Command("transfer", to="bob", amount=1), Command("balance")]


class ProxyBench:
    def __init__(self, state: StateDir, sessions: int, megabytes: int, repeats: int) -> None:
        self.state = state
        self.sessions = sessions
        self.channel = Bench(state, 1, megabytes, repeats)

    @property
    def steps(self) -> int:
        return self.sessions + 2 * self.channel.repeats

    async def run(self, tick: Callable[[], None]) -> list[Result]:
        return [*await self._latency(tick), *await self._throughput(tick)]

    async def _latency(self, tick: Callable[[], None]) -> list[Result]:
        server = BankServer(self.state, RECOMMENDED)
        port = await server.start("127.0.0.1", 0)
        serving = asyncio.create_task(server.serve_forever())
        attacker = AttackerRole(self.state, ("127.0.0.1", 0), ("127.0.0.1", port))
        via = await attacker.start()
        times: dict[int, list[float]] = {port: [], via: []}
        try:
            for _ in range(self.sessions):
                for target in (port, via):
                    start = time.perf_counter()
                    await run_session(self.state, "127.0.0.1", target, RECOMMENDED, SESSION)
                    times[target].append((time.perf_counter() - start) * 1000)
                tick()
        finally:
            await attacker.stop()
            serving.cancel()
            await server.stop()
        direct, through = statistics.median(times[port]), statistics.median(times[via])
        added = statistics.median(b - a for a, b in zip(times[port], times[via], strict=True))
        return [
            Result("session, direct (median)", direct, "ms"),
            Result("session, through the attacker (median)", through, "ms", "session, direct (median)"),
            Result("attacker adds to a session", added, "ms"),
        ]

    async def _throughput(self, tick: Callable[[], None]) -> list[Result]:
        suite = Suite(RecordProtection.AES128_GCM, KeyExchange.ECDHE)
        channel, total = self.channel, self.channel.total
        sink, port = await channel.channel_sink(suite)
        attacker = AttackerRole(self.state, ("127.0.0.1", 0), ("127.0.0.1", port))
        via = await attacker.start()
        try:
            async with sink:
                works = {
                    "direct": lambda: channel.channel_send(port, suite, 1, total),
                    "through": lambda: channel.channel_send(via, suite, 1, total),
                }
                rates = await interleaved_rates(works, channel.repeats, tick)
                direct, through = rates["direct"], rates["through"]
        finally:
            await attacker.stop()
        return [
            Result("AES-GCM records, direct", direct / 2**20, "MB/s"),
            Result(
                "AES-GCM records, through the attacker", through / 2**20, "MB/s", "AES-GCM records, direct"
            ),
        ]
