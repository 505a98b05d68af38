"""A capture as a pcapng file: a section header, one Ethernet interface, where a run has TLS key logs a
Decryption Secrets Block (so that one file is enough for Wireshark to decrypt the packets), then one
Enhanced Packet Block a frame, microsecond timestamps, little-endian (pcapng, draft-ietf-opsawg-pcapng).

Written with struct, the same bytes as scapy's writer: importing that writer cost every process that
imports the runner (the checker, and every role through `lab.cli`) 0.1 - 0.3 s at start-up."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from lab.capture import LINKTYPE_ETHERNET, SNAPLEN, Frame

SECTION_HEADER: Final = 0x0A0D0D0A
INTERFACE_DESCRIPTION: Final = 0x00000001
ENHANCED_PACKET: Final = 0x00000006
DECRYPTION_SECRETS: Final = 0x0000000A
BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
TLS_KEY_LOG: Final = 0x544C534B
"""The Decryption Secrets Block's type for an NSS key log (pcapng, section "Decryption Secrets")."""
TICKS_PER_SECOND: Final = 1_000_000
"""The interface's timestamp resolution: microseconds, pcapng's default (no if_tsresol option)."""
SECTION: Final = struct.Struct("<IHHq")
INTERFACE: Final = struct.Struct("<HHI")
PACKET: Final = struct.Struct("<IIIII")
SECRETS: Final = struct.Struct("<II")


def _block(kind: int, body: bytes) -> bytes:
    """A block: its type and total length, the body padded to 32 bits, the total length again."""
    body += bytes(-len(body) % 4)
    total = struct.pack("<I", 12 + len(body))
    return struct.pack("<I", kind) + total + body + total


def pcapng(frames: Iterable[Frame], *, tls_keylog: str = "") -> bytes:
    """The frames as a pcapng file, with the TLS key log (NSS format) embedded when there is one."""
    blocks = [
        _block(SECTION_HEADER, SECTION.pack(BYTE_ORDER_MAGIC, 1, 0, -1)),  # version 1.0, length unknown
        _block(INTERFACE_DESCRIPTION, INTERFACE.pack(LINKTYPE_ETHERNET, 0, SNAPLEN)),
    ]
    if tls_keylog.strip():
        secrets = tls_keylog.encode()
        blocks.append(_block(DECRYPTION_SECRETS, SECRETS.pack(TLS_KEY_LOG, len(secrets)) + secrets))
    for frame in frames:
        ticks = int(frame.time * TICKS_PER_SECOND)
        header = PACKET.pack(0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame.data), len(frame.data))
        blocks.append(_block(ENHANCED_PACKET, header + frame.data))
    return b"".join(blocks)


def write_pcapng(path: Path, frames: Iterable[Frame], *, tls_keylog: str = "") -> None:
    """The frames as a pcapng file at `path`, with the TLS key log embedded when there is one."""
    path.write_bytes(pcapng(frames, tls_keylog=tls_keylog))
