"""Framing: every message of the lab channel travels in a frame `type:u8 | length:u16 | body`.

TCP delivers chunks, not frames: `FrameBuffer` reassembles them. The attacker's addons use the same
buffer to cut mitmproxy's TCP messages into frames, so there is one parser for both.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from lab.channel.errors import FrameTooLarge, RemoteProtocolError

HEADER = struct.Struct("!BH")
MAX_BODY = 2**14 + 2048
"""Hard limit on a frame body: a 16 KiB record plus room for nonce and tag, as TLS allows."""
MAX_RECORD_PLAINTEXT = 2**14


class FrameType(enum.IntEnum):
    """The values TLS uses for the same purposes, so that a hex dump looks familiar."""

    ALERT = 21
    HANDSHAKE = 22
    APPLICATION = 23


@dataclass(frozen=True)
class Frame:
    type: FrameType
    body: bytes

    def __post_init__(self) -> None:
        if len(self.body) > MAX_BODY:
            raise FrameTooLarge(f"frame body of {len(self.body)} bytes exceeds {MAX_BODY}", step="record")

    def encode(self) -> bytes:
        return HEADER.pack(self.type, len(self.body)) + self.body


class FrameBuffer:
    """Collects bytes and yields whole frames. Raises on a header no valid peer would send."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        at = 0  # frames are cut from a view and the consumed prefix dropped once: one copy per frame
        with memoryview(self._buffer) as view:
            while len(view) - at >= HEADER.size:
                type_byte, length = HEADER.unpack_from(view, at)
                try:
                    frame_type = FrameType(type_byte)
                except ValueError:
                    raise RemoteProtocolError(f"unknown frame type {type_byte}", step="record") from None
                if length > MAX_BODY:
                    raise FrameTooLarge(
                        f"frame header announces {length} bytes, limit {MAX_BODY}", step="record"
                    )
                end = at + HEADER.size + length
                if len(view) < end:
                    break
                frames.append(Frame(frame_type, bytes(view[at + HEADER.size : end])))
                at = end
        del self._buffer[:at]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still waiting for the rest."""
        return len(self._buffer)

    def pending_bytes(self) -> bytes:
        return bytes(self._buffer)
