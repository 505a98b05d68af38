"""The base of the attacks that read or rewrite the lab channel frame by frame as it passes.

A subclass names its `attack` id and overrides `on_frame` (and, if it needs, `on_end`); the base does
the rest: reassembly, the session view, pass-through of anything that is not the lab channel, and a
guard that turns an exception in the addon into evidence instead of a stalled connection.
"""

from __future__ import annotations

from typing import ClassVar

from mitmproxy import tcp
from mitmproxy.addonmanager import Loader

from lab import events
from lab.channel.frames import Frame
from lab.mitm.evidence import AttackEvidence, declare_common_options
from lab.mitm.wire import FlowWire, flow_wire


class FrameAttack:
    attack: ClassVar[str]

    def __init__(self) -> None:
        self.evidence = AttackEvidence(self.attack)

    def load(self, loader: Loader) -> None:
        declare_common_options(loader)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.evidence.record(flow, events.FlowStarted(client=_address(flow.client_conn.peername)))

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        wire = flow_wire(flow)
        if wire.is_own_injection(message):
            return
        frames = wire.take_frames(message)
        if frames is None:
            if not wire.view.records[True] and "lab_not_channel" not in flow.metadata:
                flow.metadata["lab_not_channel"] = True
                self.evidence.failed(
                    flow, "these bytes are not the lab channel: passing them through untouched"
                )
            return
        out: list[bytes] = []
        for frame in frames:
            out += self._guarded(flow, wire, message.from_client, frame)
        message.content = b"".join(out)

    def _guarded(self, flow: tcp.TCPFlow, wire: FlowWire, from_client: bool, frame: Frame) -> list[bytes]:
        wire.view.observe(from_client, frame)
        try:
            return self.on_frame(flow, from_client, frame)
        except Exception as exc:  # the addon's own bug: record it, and let the frame go on unchanged
            self.evidence.error(flow, exc)
            return [frame.encode()]

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        try:
            self.on_end(flow)
        except Exception as exc:
            self.evidence.error(flow, exc)
        records = flow_wire(flow).view.records
        self.evidence.record(
            flow, events.FlowEnded(client_records=records[True], server_records=records[False])
        )

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.evidence.record(flow, events.FlowError(error=str(flow.error)))

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        """The encoded frames to send on in place of `frame` (itself, by default)."""
        return [frame.encode()]

    def on_end(self, flow: tcp.TCPFlow) -> None:
        """The flow is over (both sides closed)."""


def _address(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
