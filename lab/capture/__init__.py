"""What was on the wire: a capture of one run's connections, written as pcapng that Wireshark opens
(docs/wireshark.md).

scapy sniffs (a raw socket: root, or NET_RAW), with a BPF filter that keeps the run's connections
only. Linux's loopback hands a raw socket every frame twice, once leaving and once arriving: the
second is dropped. A capture holds at most `max_bytes` of frames; past that it keeps counting what it
dropped, and says so. The file is scapy's pcapng with, where a run has TLS key logs, a Decryption
Secrets Block in front of the packets, so that one file is enough for Wireshark to decrypt them.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer
from scapy.utils import PcapNgWriter

MAX_BYTES: Final = 8 * 1024 * 1024
"""A run's capture keeps at most this much of its frames (a run of the lab is a few tens of KiB)."""
LINKTYPE_ETHERNET: Final = 1
"""Loopback and the lab networks' interfaces both frame in Ethernet headers (loopback's are zeros)."""
TLS_KEY_LOG: Final = 0x544C534B
"""The Decryption Secrets Block's type for an NSS key log (pcapng, section "Decryption Secrets")."""
QUIET: Final = 0.05
DRAIN_AT_MOST: Final = 1.0
"""At the end, the capture reads on until no frame has come for QUIET seconds, at most this long."""
TWICE_WITHIN: Final = 0.005
"""Loopback's second copy of a frame comes within this many seconds of the first."""


class CaptureError(Exception):
    """No capture can be taken here; the message says what it needs."""


@dataclass(frozen=True)
class Frame:
    time: float
    data: bytes


@dataclass
class Captured:
    frames: list[Frame] = field(default_factory=list)
    size: int = 0
    """The bytes of the frames kept."""
    dropped: int = 0
    """Frames past the size cap, not kept."""


class RunCapture:
    def __init__(self, interface: str, bpf: str, *, max_bytes: int = MAX_BYTES) -> None:
        self.interface, self.bpf, self.max_bytes = interface, bpf, max_bytes
        self.captured = Captured()
        self._recent: dict[bytes, float] = {}
        self._sniffer: AsyncSniffer | None = None
        self._seen = 0

    def start(self) -> None:
        """Sniffing once this returns; a `CaptureError` when the raw socket cannot be had."""
        started = threading.Event()
        sniffer = AsyncSniffer(
            iface=self.interface, filter=self.bpf, prn=self._keep, store=False, started_callback=started.set
        )
        sniffer.start()
        deadline = time.monotonic() + 5
        while not started.wait(0.01):
            if sniffer.exception is not None or (
                sniffer.thread is not None and not sniffer.thread.is_alive()
            ):
                raise CaptureError(
                    f"cannot capture on {self.interface}: a raw socket needs root, or NET_RAW "
                    f"({sniffer.exception or 'the sniffer ended'})"
                )
            if time.monotonic() > deadline:
                raise CaptureError(f"the capture on {self.interface} did not start within 5 s")
        self._sniffer = sniffer

    def stop(self) -> Captured:
        """Once the frames already on their way are read (the sniffer reads behind the wire)."""
        sniffer, self._sniffer = self._sniffer, None
        if sniffer is None:
            return self.captured
        deadline = time.monotonic() + DRAIN_AT_MOST
        while time.monotonic() < deadline:
            seen = self._seen
            time.sleep(QUIET)
            if self._seen == seen:
                break
        if sniffer.running:
            sniffer.stop()
        return self.captured

    def _keep(self, packet: Packet) -> None:
        self._seen += 1
        data, now = bytes(packet), float(packet.time)
        if self.interface == "lo":
            seen = self._recent.get(data)
            self._recent = {d: t for d, t in self._recent.items() if now - t < TWICE_WITHIN}
            if seen is not None and now - seen < TWICE_WITHIN:
                self._recent.pop(data, None)
                return
            self._recent[data] = now
        if self.captured.size + len(data) > self.max_bytes:
            self.captured.dropped += 1
            return
        self.captured.frames.append(Frame(now, data))
        self.captured.size += len(data)


def of_ports(frames: Iterable[Frame], ports: set[int]) -> list[Frame]:
    """The frames of TCP connections to or from one of `ports` (a capture taken before they were known)."""
    kept = []
    for frame in frames:
        segment = Ether(frame.data).getlayer(TCP)
        if segment is not None and {segment.sport, segment.dport} & ports:
            kept.append(frame)
    return kept


class _Writer(PcapNgWriter):
    def secrets(self, tls_keylog: str) -> None:
        """A Decryption Secrets Block, after the section and interface headers, before any packet."""
        data = tls_keylog.encode()
        body = struct.pack("<II", TLS_KEY_LOG, len(data)) + data
        self.f.write(self.build_block(b"\x0a\x00\x00\x00", body))


def write_pcapng(path: Path, frames: Iterable[Frame], *, tls_keylog: str = "") -> None:
    """The frames as pcapng, with the TLS key log (NSS format) embedded when there is one."""
    writer = _Writer(str(path))
    writer.linktype = LINKTYPE_ETHERNET
    try:
        writer.write_header(None)
        if tls_keylog.strip():
            writer.secrets(tls_keylog)
        for frame in frames:
            writer.write_packet(frame.data, sec=frame.time)
    finally:
        writer.close()
