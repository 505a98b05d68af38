"""Two sans-IO endpoints shuttling bytes in memory, with a hook that sees (and may change) every frame.

The tamper hook receives (direction, frame bytes) and returns the list of frames to deliver instead:
`[frame]` to pass it on, `[]` to drop it, `[frame, frame]` to repeat it. Refusals surface as the typed
errors the receiving endpoint raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.channel.connection import (
    ApplicationData,
    ClientConfig,
    ClientConnection,
    Event,
    HandshakeComplete,
    RecentClientHellos,
    ServerConfig,
    ServerConnection,
)
from lab.channel.frames import FrameBuffer
from lab.channel.protections import Protections
from lab.state import SERVER_NAME, StateDir

Tamper = Callable[[str, bytes], list[bytes]]


class HandshakeNeverCompleted(Exception):
    """The pair's own check: the bytes stopped flowing and the client never completed the handshake.

    Its own type, not an `assert`, so that a test can expect it without also swallowing the endpoints'
    internal assertions (a broken invariant in lab.channel must fail the test).
    """


def passthrough(direction: str, frame: bytes) -> list[bytes]:
    return [frame]


@dataclass
class Pair:
    client: ClientConnection
    server: ServerConnection
    tamper: Tamper = passthrough
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    """Every frame as delivered, per direction ('c2s' or 's2c')."""

    def _deliver(self, direction: str, data: bytes) -> bool:
        frames = [f.encode() for f in FrameBuffer().feed(data)]
        delivered = [out for frame in frames for out in self.tamper(direction, frame)]
        receiver, events = (
            (self.server, self.server_events) if direction == "c2s" else (self.client, self.client_events)
        )
        for frame in delivered:
            self.wire.append((direction, frame))
            events.extend(receiver.receive_data(frame))
        return bool(data)

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to send."""
        while self._deliver("c2s", self.client.data_to_send()) | self._deliver(
            "s2c", self.server.data_to_send()
        ):
            pass

    def handshake(self) -> HandshakeComplete:
        self.client.start()
        self.pump()
        done = [e for e in self.client_events if isinstance(e, HandshakeComplete)]
        if not done:
            raise HandshakeNeverCompleted("the handshake did not complete")
        return done[0]

    def client_sends(self, data: bytes) -> list[bytes]:
        """What the server received as application data after the client sent `data`."""
        before = len(self.server_events)
        self.client.send_application_data(data)
        self.pump()
        return [e.data for e in self.server_events[before:] if isinstance(e, ApplicationData)]

    def server_sends(self, data: bytes) -> list[bytes]:
        before = len(self.client_events)
        self.server.send_application_data(data)
        self.pump()
        return [e.data for e in self.client_events[before:] if isinstance(e, ApplicationData)]


def make_pair(
    state: StateDir,
    client: Protections,
    server: Protections | None = None,
    *,
    tamper: Tamper = passthrough,
    server_leaf: str | None = None,
    server_name: str = SERVER_NAME,
    hellos: RecentClientHellos | None = None,
) -> Pair:
    """A client and server over `state`'s PKI. `server_leaf` names an attacker certificate to present."""
    leaf = state.attacker_leaf(server_leaf) if server_leaf else state.server_leaf()
    return Pair(
        ClientConnection(ClientConfig(client, server_name, state.trust())),
        ServerConnection(ServerConfig(server or client, leaf.chain, leaf.private_key, hellos=hellos)),
        tamper,
    )
