"""What was on the wire: a capture of one run's connections, written as pcapng that Wireshark opens
(docs/wireshark.md).

A packet socket (root, or NET_RAW) with a BPF filter that keeps the run's connections only, compiled
by scapy (with libpcap). Linux's loopback hands such a socket every frame twice, once leaving and once
arriving: only the leaving copy is kept, and as the kernel queues that copy before the send returns,
a capture taken after the run's last send holds all of it. The frames wait in the socket's buffer and
a thread of this process reads them off; `take` reads what is left. A capture holds at most
`max_bytes` of frames; past that it counts what it dropped, and says so. `lab.capture.pcapng` writes
them as a file, `lab.capture.streams` reads them back, `lab.capture.diagram` draws them.

scapy is imported only to compile a filter: the attacker imports this module at start-up.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Final

MAX_BYTES: Final = 8 * 1024 * 1024
"""A run's capture keeps at most this much of its frames (a run of the lab is a few tens of KiB)."""
ETH_P_ALL: Final = 0x0003
SO_TIMESTAMPNS: Final = 35
"""Linux's socket option (and control message) for the kernel's receive time, in nanoseconds."""
SO_RCVBUFFORCE: Final = 33
"""Linux's SO_RCVBUF past net.core.rmem_max, for NET_ADMIN (Python's socket module has no name for it)."""
LARGEST_FRAME: Final = 65536 + 14
"""Loopback's MTU and an Ethernet header: no frame on the lab's interfaces is larger."""
RECEIVE_BUFFER: Final = 16 * 1024 * 1024
"""What the kernel may hold for the reader (root may set past net.core.rmem_max)."""
SETTLE: Final = 0.02
"""On an interface other than loopback, frames arriving from another host are delivered a moment
after they are sent: `take` reads until none has come for this long."""


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
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.failed: str | None = None
        """Why the capture stopped before `stop`, if it did: what it had is kept."""

    def start(self) -> None:
        """Capturing once this returns; a `CaptureError` when the socket or the filter cannot be had."""
        try:
            socket.if_nametoindex(self.interface)
        except OSError:
            raise CaptureError(f"cannot capture on {self.interface}: no such interface here") from None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise CaptureError(
                f"cannot capture on {self.interface}: a raw socket needs root, or NET_RAW ({exc})"
            ) from None
        try:
            self._filter(sock)
            sock.bind((self.interface, ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:  # NET_RAW without NET_ADMIN: the default buffer, read as it comes
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot capture on {self.interface}: {exc}") from None
        sock.setblocking(False)
        self._socket = sock
        self._read_waiting()
        self.captured = Captured()  # what came in before the filter and the bind were on
        self._wake, self._woken = socket.socketpair()
        """`stop` writes to one end: the reader, waiting in select on the other, ends at once."""
        self._reader = threading.Thread(target=self._read, name=f"capture {self.interface}", daemon=True)
        self._reader.start()

    def _filter(self, sock: socket.socket) -> None:
        """The BPF filter on the socket before it is bound: no frame of another connection gets in."""
        from scapy.arch.linux import attach_filter
        from scapy.error import Scapy_Exception

        try:
            attach_filter(sock, self.bpf, self.interface)
        except ImportError as exc:
            raise CaptureError(f"cannot compile the capture filter: {exc} (it needs libpcap)") from None
        except Scapy_Exception as exc:
            raise CaptureError(f"the capture filter {self.bpf!r} does not compile: {exc}") from None

    def begin(self) -> None:
        """Capture afresh from now: what was captured before is dropped."""
        with self._lock:
            self._read_waiting()
            self.captured = Captured()

    def take(self) -> Captured:
        """What was captured since the last take (or the start); the capture goes on."""
        settle = 0.0 if self.interface == "lo" else SETTLE
        while True:
            with self._lock:
                read = self._read_waiting()
            if not read or not settle:
                break
            time.sleep(settle)
        with self._lock:
            taken, self.captured = self.captured, Captured()
        return taken

    def stop(self) -> Captured:
        """The frames not taken yet; the socket closed."""
        if self._socket is None:
            return self.captured
        taken = self.take()
        self._wake.send(b"\0")
        if self._reader is not None:
            self._reader.join(timeout=5)
        for end in (self._socket, self._wake, self._woken):
            end.close()
        self._socket = None
        return taken

    def _read(self) -> None:
        sock = self._socket
        assert sock is not None
        while True:
            try:
                ready, _, _ = select.select([sock, self._woken], [], [])
            except (OSError, ValueError):  # closed
                return
            if self._woken in ready:
                return
            with self._lock:
                self._read_waiting()
                if self.failed is not None:  # a socket in error stays readable: no spinning on it
                    return

    def _read_waiting(self) -> int:
        """Every frame waiting in the socket's buffer, kept (or counted as dropped); how many."""
        sock = self._socket
        if sock is None:
            return 0
        read = 0
        while True:
            try:
                data, ancillary, _, address = sock.recvmsg(LARGEST_FRAME, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return read
            except OSError as exc:  # the interface went away, or the socket is closed
                self.failed = self.failed or f"the capture on {self.interface} stopped: {exc}"
                return read
            read += 1
            if self.interface == "lo" and address[2] != socket.PACKET_OUTGOING:
                continue  # loopback's arriving copy of a frame already kept as it left
            self._keep(Frame(_received_at(ancillary), data))

    def _keep(self, frame: Frame) -> None:
        if self.captured.size + len(frame.data) > self.max_bytes:
            self.captured.dropped += 1
            return
        self.captured.frames.append(frame)
        self.captured.size += len(frame.data)


def capture_refused(interface: str = "lo") -> str | None:
    """Why this process cannot capture on `interface`; None when it can. The local roles are this
    user's processes: what it may, they may."""
    probe = RunCapture(interface, "tcp")
    try:
        probe.start()
    except CaptureError as exc:
        return str(exc)
    probe.stop()
    return None


def _received_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return float(seconds + nanoseconds / 1e9)
    return time.time()
