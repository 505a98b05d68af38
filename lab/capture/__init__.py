"""What was on the wire: a capture of one run's connections, written as pcapng that Wireshark opens
(docs/wireshark.md).

A packet socket (root, or NET_RAW) with a BPF filter that keeps the run's connections only, compiled
by scapy (with libpcap). Linux's loopback hands such a socket every frame twice, once leaving and once
arriving: only the leaving copy is kept. The kernel queues that copy as the frame leaves, so a capture
taken once the roles are idle holds the run (but for an ACK the kernel may still send later, on its
own timer). On a lab network a frame from another host is delivered a moment after it is sent:
there `take` reads on until no frame has come for `SETTLE`, within `SETTLE_AT_MOST`. The frames
wait in the socket's buffer and a thread of this process reads them off; `take` reads what is left.
A capture holds at most `max_bytes` of frames; past that it counts what it dropped, and how many the
kernel dropped (its buffer full), and says so. `lab.capture.pcapng` writes them as a file,
`lab.capture.streams` reads them back, `lab.capture.diagram` draws them.

scapy is imported only to compile a filter: the attacker imports this module at start-up.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from lab import system

MAX_BYTES: Final = 8 * 1024 * 1024
"""A run's capture keeps at most this much of its frames (a run of the lab is a few tens of KiB)."""
ETH_P_ALL: Final = 0x0003
LINKTYPE_ETHERNET: Final = 1
"""Loopback and the lab networks' interfaces both frame in Ethernet headers (loopback's are zeros)."""
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
SO_ATTACH_FILTER: Final = 26
BPF_RET_K: Final = 0x06
SO_TIMESTAMPNS: Final = 35
"""Linux's socket option (and control message) for the kernel's receive time, in nanoseconds."""
SO_RCVBUFFORCE: Final = 33
"""Linux's SO_RCVBUF past net.core.rmem_max, for NET_ADMIN (Python's socket module has no name for it)."""
LARGEST_FRAME: Final = 65536 + 14
"""Loopback's MTU and an Ethernet header: no frame on the lab's interfaces is larger."""
RECEIVE_BUFFER: Final = 16 * 1024 * 1024
"""What the kernel may hold for the reader (root may set past net.core.rmem_max)."""
SETTLE: Final = 0.01
"""`take` reads until no frame has come for this long..."""
SETTLE_AT_MOST: Final = 0.2
"""... or this long has passed (a lab network's own ARP may never go quiet)."""
SNAPLEN: Final = 0x40000
"""What the filter accepts of a frame: libpcap compiles for 65535 bytes, less than a loopback frame."""
SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6
"""Frames the kernel received and dropped (its buffer full) since the last asking."""


class CaptureError(Exception):
    """No capture can be taken here; the message says what it needs."""


@dataclass(frozen=True)
class Frame:
    time: float
    data: bytes

    @property
    def ethertype(self) -> int:
        """What its Ethernet header says it carries (0 for a frame too short to have one)."""
        return int.from_bytes(self.data[12:14]) if len(self.data) >= 14 else 0


@dataclass
class Captured:
    frames: list[Frame] = field(default_factory=list)
    size: int = 0
    """The bytes of the frames kept."""
    dropped: int = 0
    """Frames past the size cap, not kept."""
    lost: int = 0
    """Frames the kernel dropped before they were read (its buffer was full)."""


class RunCapture:
    def __init__(self, interface: str, bpf: str, *, max_bytes: int = MAX_BYTES) -> None:
        self.interface, self.bpf, self.max_bytes = interface, bpf, max_bytes
        self.captured = Captured()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._last = 0.0
        """When the last frame was read (monotonic)."""
        self.failed: str | None = None
        """Why the capture stopped before `stop`, if it did: what it had is kept."""

    def start(self) -> None:
        """Capturing once this returns; a `CaptureError` when the socket or the filter cannot be had."""
        try:
            socket.if_nametoindex(self.interface)
        except (OSError, ValueError):
            raise CaptureError(f"cannot capture on {self.interface}: no such interface here") from None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise CaptureError(
                f"cannot capture on {self.interface}: a raw socket needs root, or NET_RAW ({exc})"
            ) from None
        except OSError as exc:
            raise CaptureError(f"cannot capture on {self.interface}: no packet socket here ({exc})") from None
        try:
            self._filter(sock)
            sock.bind((self.interface, ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except PermissionError:  # NET_RAW without NET_ADMIN: the default buffer, read as it comes
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._wake, self._woken = socket.socketpair()
            """`stop` writes to one end: the reader, waiting on both, ends at once."""
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot capture on {self.interface}: {exc}") from None
        sock.setblocking(False)
        self._socket = sock
        self._read_waiting()
        self._lost()
        self.captured = Captured()  # what came in before the filter and the bind were on
        self._reader = threading.Thread(target=self._read, name=f"capture {self.interface}", daemon=True)
        self._reader.start()

    def _filter(self, sock: socket.socket) -> None:
        """The BPF filter on the socket before it is bound: no frame of another connection gets in."""
        from scapy.arch.common import compile_filter, free_filter
        from scapy.error import Scapy_Exception
        from scapy.libs.structures import sock_fprog

        try:
            program = compile_filter(self.bpf, linktype=LINKTYPE_ETHERNET)
        except ImportError:
            raise CaptureError(
                f"libpcap, which compiles the capture's filter, is not installed here "
                f"(Debian: {system.install_line(['libpcap'])})"
            ) from None
        except Scapy_Exception as exc:
            raise CaptureError(f"the capture filter {self.bpf!r} does not compile: {exc}") from None
        try:
            for n in range(program.bf_len):
                instruction = program.bf_insns[n]
                if instruction.code == BPF_RET_K and instruction.k:  # "accept this many bytes"
                    instruction.k = SNAPLEN
            attached = sock_fprog(program.bf_len, program.bf_insns)
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(attached))
        finally:
            free_filter(program)

    def begin(self) -> None:
        """Capture afresh from now: what was captured before is dropped."""
        with self._lock:
            self._read_waiting()
            self._lost()
            self.captured = Captured()

    def take(self) -> Captured:
        """What was captured since the last take (or the start); the capture goes on."""
        deadline = time.monotonic() + (0.0 if self.interface == "lo" else SETTLE_AT_MOST)
        while True:
            with self._lock:
                self._read_waiting()
                quiet = time.monotonic() - self._last
            if quiet >= SETTLE or time.monotonic() >= deadline or self.failed:
                break
            time.sleep(SETTLE - quiet)
        with self._lock:
            taken, self.captured = self.captured, Captured()
            taken.lost = self._lost()
        return taken

    def _lost(self) -> int:
        """Frames the kernel dropped since the last asking."""
        if self._socket is None:
            return 0
        try:
            _, drops = struct.unpack("II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return 0
        return int(drops)

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
        with selectors.DefaultSelector() as selector:  # poll-like: a descriptor past 1024 is no bother
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._woken, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._woken in ready:
                    return
                self._read_ready()

    def _read_ready(self) -> None:
        with self._lock:
            self._read_waiting()
        if self.failed is not None:  # a socket in error stays readable: the reader ends rather than spin
            self._wake.send(b"\0")

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
            self._last = time.monotonic()
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
