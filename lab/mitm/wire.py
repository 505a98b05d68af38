"""The lab channel as an attacker sees it in mitmproxy's TCP flows.

TCP messages are chunks, not frames ("you should not rely on message boundaries", mitmproxy/tcp.py):
`FlowWire` reassembles each direction into frames with the channel's own `FrameBuffer`, keeps a view of
the handshake as it passed (randoms, suites, certificate), and remembers what the addon injected, since
injected data comes back through `tcp_message` like anything else.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from mitmproxy import ctx, tcp

from lab.channel.errors import RemoteProtocolError
from lab.channel.frames import Frame, FrameBuffer, FrameType
from lab.channel.messages import (
    ClientHello,
    ClientKeyExchange,
    HandshakeMessage,
    MessageType,
    ServerHello,
    decode_handshake,
)
from lab.channel.suites import Suite

_flow_numbers = itertools.count(1)


@dataclass
class SessionView:
    """The handshake as it passed on the wire, and how many records went each way."""

    number: int
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    client_key_exchange: bytes = b""
    records: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    """Application records seen so far, keyed by from_client."""

    @property
    def suite(self) -> Suite | None:
        return Suite.from_code(self.server_hello.suite_code) if self.server_hello else None

    def describe(self) -> dict[str, object]:
        """What evidence lines say about the session they belong to."""
        return {
            "flow": self.number,
            "client_random": self.client_hello.random.hex() if self.client_hello else None,
            "suite": self.suite.name if self.suite else None,
        }

    def observe(self, from_client: bool, frame: Frame) -> HandshakeMessage | None:
        """Note what this frame says; returns the handshake message if it was one the attacker can read."""
        if frame.type is FrameType.APPLICATION:
            self.records[from_client] += 1
            return None
        if frame.type is not FrameType.HANDSHAKE:
            return None
        try:
            message = decode_handshake(frame.body, "handshake")
        except RemoteProtocolError:
            return None
        if isinstance(message, ClientHello):
            self.client_hello = message
        elif isinstance(message, ServerHello):
            self.server_hello = message
        elif isinstance(message, ClientKeyExchange):
            self.client_key_exchange = message.exchange
        return message


def looks_like_lab(from_client: bool, prefix: bytes) -> bool | None:
    """Whether a direction's first bytes can start the lab channel; None until 4 bytes have arrived.

    The client must open with a handshake frame holding a ClientHello; the server answers with a
    ServerHello or an alert. (A TLS ClientHello starts 16 03 01 02: a plausible frame header, but its
    fourth byte is no ClientHello.)
    """
    if len(prefix) < 4:
        return None
    if from_client:
        return prefix[0] == FrameType.HANDSHAKE and prefix[3] == MessageType.CLIENT_HELLO
    if prefix[0] == FrameType.ALERT:
        return True
    return prefix[0] == FrameType.HANDSHAKE and prefix[3] == MessageType.SERVER_HELLO


class FlowWire:
    """Per flow: a frame buffer per direction, the session view, and the addon's own injections."""

    def __init__(self) -> None:
        self.buffers = {True: FrameBuffer(), False: FrameBuffer()}
        self.injected: dict[bool, deque[bytes]] = {True: deque(), False: deque()}
        self.view = SessionView(next(_flow_numbers))
        self.passthrough = False
        """Set when the bytes turn out not to be the lab channel: from then on, hands off."""
        self.recognised = {True: False, False: False}

    def is_own_injection(self, message: tcp.TCPMessage) -> bool:
        queue = self.injected[message.from_client]
        if queue and queue[0] == message.content:
            queue.popleft()
            return True
        return False

    def take_frames(self, message: tcp.TCPMessage) -> list[Frame] | None:
        """The frames this message completes; its content is emptied for the caller to refill.

        None when the bytes are not the lab channel: the flow switches to pass-through and the message
        keeps every byte, including those held back from earlier messages.
        """
        if self.passthrough:
            return None
        buffer = self.buffers[message.from_client]
        held = buffer.pending_bytes()
        if not self.recognised[message.from_client]:
            verdict = looks_like_lab(message.from_client, held + message.content)
            if verdict is False:
                self.passthrough = True
                message.content = held + message.content
                return None
            self.recognised[message.from_client] = bool(verdict)
        try:
            frames = buffer.feed(message.content)
        except RemoteProtocolError:
            self.passthrough = True
            message.content = held + message.content
            return None
        message.content = b""
        return frames

    def inject(self, flow: tcp.TCPFlow, *, to_client: bool, data: bytes) -> None:
        if not data:
            return
        self.injected[not to_client].append(data)
        ctx.master.commands.call("inject.tcp", flow, to_client, data)


def flow_wire(flow: tcp.TCPFlow) -> FlowWire:
    wire: FlowWire = flow.metadata.setdefault("lab_wire", FlowWire())
    return wire
