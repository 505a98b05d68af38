"""`mitmlab bench clients`, its first part: what mitmproxy in the middle costs a real TLS handshake.

TLS handshakes with the HTTPS bank (Python's ssl, verifying as a client does): straight to the bank,
through the attacker relaying the bytes (no attack), and through the attacker intercepting (it
terminates the client's TLS with the rogue CA's certificate and opens its own to the bank). The three
alternate, round after round, in one process and one event loop; each reports its median.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Callable

from lab.bench.measure import Result
from lab.channel.protections import RECOMMENDED
from lab.net import WebPorts
from lab.roles.attacker import AttackerRole
from lab.roles.server import BankServer
from lab.state import SERVER_NAME, StateDir

DIRECT = "TLS handshake, direct (median)"
RELAYED = "TLS handshake, through mitmproxy relaying (median)"
INTERCEPTED = "TLS handshake, through mitmproxy intercepting (median)"


class HandshakeBench:
    def __init__(self, state: StateDir, handshakes: int) -> None:
        self.state = state
        self.handshakes = handshakes

    @property
    def steps(self) -> int:
        return self.handshakes

    async def run(self, tick: Callable[[], None]) -> list[Result]:
        server = BankServer(self.state, RECOMMENDED)
        upstream = await server.start("127.0.0.1", 0)
        bank = await server.start_web("127.0.0.1")
        attacker = AttackerRole(
            self.state,
            ("127.0.0.1", 0),
            ("127.0.0.1", upstream),
            web_listen=WebPorts(0, 0),
            web_upstream=bank,
        )
        await attacker.start()
        relay = attacker.web_ports()
        assert relay is not None
        trusting = ssl.create_default_context(cafile=self.state.ca_cert)
        trusting.load_verify_locations(self.state.attacker_cert("rogue-ca"))  # the careless user's
        times: dict[str, list[float]] = {DIRECT: [], RELAYED: [], INTERCEPTED: []}
        try:
            for _ in range(self.handshakes):
                attacker.switch(None)
                times[DIRECT].append(await _handshake(bank.https, trusting))
                times[RELAYED].append(await _handshake(relay.https, trusting))
                attacker.switch("rogue-ca")
                times[INTERCEPTED].append(await _handshake(relay.https, trusting))
                tick()
        finally:
            await attacker.stop()
            await server.stop()
        medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
        return [
            Result(DIRECT, medians[DIRECT], "ms"),
            Result(RELAYED, medians[RELAYED], "ms", DIRECT),
            Result(INTERCEPTED, medians[INTERCEPTED], "ms", DIRECT),
        ]


async def _handshake(port: int, context: ssl.SSLContext) -> float:
    started = time.perf_counter()
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=SERVER_NAME)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed
