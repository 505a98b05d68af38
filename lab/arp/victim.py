"""The client's side of ARP positioning: its cache entry for the server before, during and after the
run, the TTL of the server's answers (forwarding costs a hop), and the detector watching the cache
while the run goes on. Traffic is the kernel's (a socket, an ICMP echo): a packet library that did its
own ARP would repair the cache it is meant to observe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lab import events
from lab.arp.host import forget_neighbour, pin_neighbour
from lab.arp.neighbours import ARP_TABLE, Neighbour, read_neighbours
from lab.arp.poison import Host, PositioningError
from lab.arp.watch import ArpWatch
from lab.evidence import EvidenceLog

Moment = Literal["before", "during", "after"]
ECHO_REQUEST, ECHO_REPLY = 8, 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"mitm-lab") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload


def echo_ttl(ip: str, timeout: float = 1.0) -> int | None:
    """The TTL of `ip`'s answer to one ICMP echo (a raw socket: NET_RAW), None when none came."""
    ident, seq = os.getpid() & 0xFFFF, int(time.monotonic() * 1000) & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        raw.settimeout(timeout)
        raw.sendto(echo_request(ident, seq), (ip, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            raw.settimeout(left)
            try:
                data, (source, _) = raw.recvfrom(2048)
            except TimeoutError:
                return None
            header = (data[0] & 0x0F) * 4
            kind, _, _, answer_ident, answer_seq = struct.unpack("!BBHHH", data[header : header + 8])
            if source == ip and kind == ECHO_REPLY and (answer_ident, answer_seq) == (ident, seq):
                return data[8]
    return None


class CacheWatch:
    """Watch the client's own ARP cache (every `poll` seconds: a poisoning is seen within that) and
    record what it shows of the server."""

    def __init__(self, evidence: EvidenceLog, server_ip: str, table: Path, poll: float = 0.01) -> None:
        self.evidence, self.server_ip, self.table, self.poll = evidence, server_ip, table, poll
        self._detector = ArpWatch()
        self._task: asyncio.Task[None] | None = None

    def entry(self, moment: Moment) -> Neighbour | None:
        found = read_neighbours(self.table).get(self.server_ip)
        self.evidence.record(
            events.ArpEntry(
                moment=moment,
                ip=self.server_ip,
                mac=found.mac if found else None,
                permanent=found.permanent if found else False,
            )
        )
        return found

    async def hops(self, moment: Moment) -> None:
        try:
            ttl = await asyncio.to_thread(echo_ttl, self.server_ip)
        except PermissionError:
            ttl = None  # no raw socket here: the TTL is not part of this run's evidence
        self.evidence.record(events.HopsMeasured(moment=moment, ip=self.server_ip, ttl=ttl))

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def look(self) -> None:
        """Read the cache once, and record what the detector makes of it."""
        table = {ip: n.mac for ip, n in read_neighbours(self.table).items()}
        for found in self._detector.observe(table, time.monotonic()):
            self.evidence.record(
                events.ArpDetected(kind=found.kind, ip=found.ip, mac=found.mac, before=found.before)
            )

    async def _watch(self) -> None:
        while True:
            self.look()
            await asyncio.sleep(self.poll)


class ArpVictim:
    """What the client role does in a run through ARP positioning: warm its cache (a victim that never
    talked has no entry to poison), pin the server's entry where `static_arp` is on, watch, and record
    the entry and the hops at each moment."""

    def __init__(self, evidence: Callable[[], EvidenceLog], table: Path = ARP_TABLE) -> None:
        self.evidence, self.table = evidence, table
        self._watch: CacheWatch | None = None
        self._before: Neighbour | None = None
        self._pinned: Neighbour | None = None

    async def begin(self, server_ip: str, *, static_arp: bool, warm: bool = True) -> Neighbour | None:
        """The server's entry before the attacker starts (None: a cold cache)."""
        await self.end()
        watch = self._watch = CacheWatch(self.evidence(), server_ip, self.table)
        if warm:
            await watch.hops("before")  # the echo is the kernel's: it asks for the server's MAC
        else:
            learnt = read_neighbours(self.table).get(server_ip)
            if learnt is not None:  # an earlier run's: this victim has never talked to the server
                forget_neighbour(learnt.device, server_ip)
        entry = self._before = watch.entry("before")
        if static_arp:
            if entry is None:
                raise PositioningError(f"static_arp: no entry for {server_ip} to pin (a cold cache)")
            pin_neighbour(entry.device, Host(entry.ip, entry.mac))
            self._pinned = entry
            self.evidence().record(events.ArpPinned(ip=entry.ip, mac=entry.mac))
        watch.start()
        return entry

    async def during(self, wait: float = 0.0) -> bool:
        """Record the entry and the hops now, or once the entry has left the MAC it had before (within
        `wait` seconds: the attacker's first reply can be lost, the next comes an interval later).
        Whether it moved."""
        watch = self._watch
        if watch is None:
            return False
        deadline = time.monotonic() + (0.0 if self._pinned else wait)  # a permanent entry stays put
        while True:
            now = read_neighbours(self.table).get(watch.server_ip)
            moved = self._before is not None and now is not None and now.mac != self._before.mac
            if moved or time.monotonic() >= deadline:
                break
            await asyncio.sleep(watch.poll)
        watch.look()  # what the client sees now, it has seen before its session starts
        watch.entry("during")
        await watch.hops("during")
        return moved

    async def end(self) -> None:
        """Stop watching; the entry and the hops after; a pinned entry is learnt again."""
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.stop()
            watch.entry("after")
            await watch.hops("after")
        pinned, self._pinned = self._pinned, None
        if pinned is not None:
            forget_neighbour(pinned.device, pinned.ip)
