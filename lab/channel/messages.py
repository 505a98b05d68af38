"""Handshake messages and alerts: frozen values that encode to frame bodies and decode from them.

Layout of a handshake frame body: `msg_type:u8` then the fields, byte strings prefixed by their length.
Decoding validates everything, so a message that exists is well formed; anything else is a
`RemoteProtocolError` naming the step it arrived at.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from lab.channel.errors import RemoteProtocolError
from lab.channel.suites import RecordFeatures, Suite

RANDOM_SIZE = 32
X25519_SHARE_SIZE = 32
MAC_SIZE = 32


class MessageType(enum.IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    SERVER_KEY_EXCHANGE = 12
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class Reader:
    """Reads length-prefixed fields; every shortfall is the peer's protocol error at `step`."""

    def __init__(self, data: bytes, step: str) -> None:
        self._data = memoryview(data)
        self._at = 0
        self.step = step

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise RemoteProtocolError(f"message truncated: needed {n} more bytes", step=self.step)
        chunk = bytes(self._data[self._at : self._at + n])
        self._at += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def vec8(self) -> bytes:
        return self.take(self.u8())

    def vec16(self) -> bytes:
        return self.take(self.u16())

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def end(self) -> None:
        if self._at != len(self._data):
            raise RemoteProtocolError(
                f"{len(self._data) - self._at} unexpected bytes after the message", step=self.step
            )


def vec8(data: bytes) -> bytes:
    if len(data) > 0xFF:
        raise ValueError("field too long for a u8 length")
    return bytes([len(data)]) + data


def vec16(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("field too long for a u16 length")
    return struct.pack("!H", len(data)) + data


def _exact(value: bytes, size: int, what: str, step: str) -> None:
    if len(value) != size:
        raise RemoteProtocolError(f"{what} must be {size} bytes, got {len(value)}", step=step)


@dataclass(frozen=True)
class ClientHello:
    msg_type: ClassVar = MessageType.CLIENT_HELLO
    step: ClassVar = "client_hello"

    random: bytes
    features: RecordFeatures
    """The record-layer settings the client uses; the server must use the same."""
    suite_codes: tuple[int, ...]
    """Wire codes as offered, unknown ones included: the transcript covers exactly what was sent."""

    def __post_init__(self) -> None:
        _exact(self.random, RANDOM_SIZE, "client random", self.step)
        if not self.suite_codes:
            raise RemoteProtocolError("ClientHello offers no suites", step=self.step)

    @property
    def suites(self) -> tuple[Suite, ...]:
        known = (Suite.from_code(code) for code in self.suite_codes)
        return tuple(s for s in known if s is not None)

    def encode(self) -> bytes:
        codes = b"".join(struct.pack("!H", c) for c in self.suite_codes)
        return bytes([self.msg_type]) + self.random + bytes([self.features]) + vec16(codes)

    @classmethod
    def decode_fields(cls, reader: Reader) -> Self:
        random = reader.take(RANDOM_SIZE)
        bits = reader.u8()
        if bits & ~int(RecordFeatures.ALL):  # (~ of an IntFlag keeps only its own bits: 0)
            raise RemoteProtocolError(f"unknown record-layer feature bits 0x{bits:02x}", step=cls.step)
        codes = reader.vec16()
        if len(codes) % 2:
            raise RemoteProtocolError("odd length of the suite list", step=cls.step)
        return cls(random, RecordFeatures(bits), tuple(struct.unpack(f"!{len(codes) // 2}H", codes)))


@dataclass(frozen=True)
class ServerHello:
    msg_type: ClassVar = MessageType.SERVER_HELLO
    step: ClassVar = "server_hello"

    random: bytes
    suite_code: int
    certificate_chain: tuple[bytes, ...]
    """DER certificates, the server's own first."""

    def __post_init__(self) -> None:
        _exact(self.random, RANDOM_SIZE, "server random", self.step)
        if not self.certificate_chain:
            raise RemoteProtocolError("ServerHello carries no certificate", step=self.step)

    def encode(self) -> bytes:
        chain = b"".join(vec16(der) for der in self.certificate_chain)
        return bytes([self.msg_type]) + self.random + struct.pack("!H", self.suite_code) + vec16(chain)

    @classmethod
    def decode_fields(cls, reader: Reader) -> Self:
        random = reader.take(RANDOM_SIZE)
        suite_code = reader.u16()
        chain_reader = Reader(reader.vec16(), cls.step)
        chain = []
        while chain_reader.remaining:
            chain.append(chain_reader.vec16())
        return cls(random, suite_code, tuple(chain))


@dataclass(frozen=True)
class ServerKeyExchange:
    """The server's ephemeral X25519 share, signed with the certified key over both randoms and the share."""

    msg_type: ClassVar = MessageType.SERVER_KEY_EXCHANGE
    step: ClassVar = "server_key_exchange"

    share: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _exact(self.share, X25519_SHARE_SIZE, "X25519 share", self.step)

    def encode(self) -> bytes:
        return bytes([self.msg_type]) + self.share + vec16(self.signature)

    @classmethod
    def decode_fields(cls, reader: Reader) -> Self:
        return cls(reader.take(X25519_SHARE_SIZE), reader.vec16())


@dataclass(frozen=True)
class ClientKeyExchange:
    """RSA: the pre-master secret encrypted under the certified key. ECDHE: the client's X25519 share."""

    msg_type: ClassVar = MessageType.CLIENT_KEY_EXCHANGE
    step: ClassVar = "client_key_exchange"

    exchange: bytes

    def __post_init__(self) -> None:
        if not self.exchange:
            raise RemoteProtocolError("empty key exchange", step=self.step)

    def encode(self) -> bytes:
        return bytes([self.msg_type]) + vec16(self.exchange)

    @classmethod
    def decode_fields(cls, reader: Reader) -> Self:
        return cls(reader.vec16())


@dataclass(frozen=True)
class Finished:
    """Proof of the keys and, with `transcript`, of the whole handshake as this side saw it.

    TLS folds both into one value; the lab keeps them apart so that a refusal can say which one failed:
    keys computed for another session (a replayed flight) or a handshake edited on the wire.
    """

    msg_type: ClassVar = MessageType.FINISHED
    step: ClassVar = "finished"

    key_confirmation: bytes
    transcript_mac: bytes = b""
    """Empty when the sender's `transcript` protection is off."""

    def __post_init__(self) -> None:
        _exact(self.key_confirmation, MAC_SIZE, "key confirmation", self.step)
        if self.transcript_mac:
            _exact(self.transcript_mac, MAC_SIZE, "transcript MAC", self.step)

    def encode(self) -> bytes:
        return bytes([self.msg_type]) + self.key_confirmation + vec8(self.transcript_mac)

    @classmethod
    def decode_fields(cls, reader: Reader) -> Self:
        return cls(reader.take(MAC_SIZE), reader.vec8())


HandshakeMessage = ClientHello | ServerHello | ServerKeyExchange | ClientKeyExchange | Finished
_BY_TYPE: dict[int, type[HandshakeMessage]] = {
    cls.msg_type: cls for cls in (ClientHello, ServerHello, ServerKeyExchange, ClientKeyExchange, Finished)
}


def decode_handshake(body: bytes, step: str) -> HandshakeMessage:
    """Decode a handshake frame body; `step` names where the caller is, for the error if it fails."""
    if not body:
        raise RemoteProtocolError("empty handshake frame", step=step)
    cls = _BY_TYPE.get(body[0])
    if cls is None:
        raise RemoteProtocolError(f"unknown handshake message type {body[0]}", step=step)
    reader = Reader(body[1:], cls.step)
    message = cls.decode_fields(reader)
    reader.end()
    return message


@dataclass(frozen=True)
class Alert:
    """Why an endpoint is closing: the protection that fired (empty for a protocol error) and the step."""

    protection: str
    step: str
    message: str

    def encode(self) -> bytes:
        text = self.message.encode("utf-8", "replace")[:1000]
        return vec8(self.protection.encode()) + vec8(self.step.encode()) + vec16(text)

    @classmethod
    def decode(cls, body: bytes) -> Alert:
        reader = Reader(body, "record")
        fields = reader.vec8(), reader.vec8(), reader.vec16()
        reader.end()
        protection, step, message = (f.decode("utf-8", "replace") for f in fields)
        return cls(protection, step, message)
