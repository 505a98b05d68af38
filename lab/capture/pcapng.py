"""A capture as a pcapng file: scapy's writer, with, where a run has TLS key logs, a Decryption Secrets
Block in front of the packets, so that one file is enough for Wireshark to decrypt them."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from scapy.utils import PcapNgWriter

from lab.capture import LINKTYPE_ETHERNET, Frame

TLS_KEY_LOG: Final = 0x544C534B
"""The Decryption Secrets Block's type for an NSS key log (pcapng, section "Decryption Secrets")."""


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
