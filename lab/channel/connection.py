"""The lab channel's endpoints: sans-IO state machines, bytes in, events and bytes out (as h11 and h2).

    conn = ClientConnection(config)        # or ServerConnection(config)
    conn.start()                           # the client queues its ClientHello
    events = conn.receive_data(data)       # HandshakeComplete, ApplicationData
    wire = conn.data_to_send()             # bytes for the peer
    conn.send_application_data(b"...")     # once established

No socket, no asyncio, no clock or randomness of its own: both are injected, so handshakes are
reproducible in tests. Every check that can refuse raises a `Refusal` naming its protection and step;
the endpoint queues an alert for the peer first, so `data_to_send()` after an error carries the reason.

The flow (seed 001 §5.2, seed 003 "TLS1.2握手过程"):

    client                                       server
    ClientHello(random, record features, suites)  ->
                                         <-      ServerHello(random, suite, certificate chain)
                                         <-      [ServerKeyExchange(X25519 share, signature)]  ECDHE only
    ClientKeyExchange(RSA-OAEP pre-master | X25519 share)
    Finished(key confirmation, [transcript MAC])  ->
                                         <-      Finished(key confirmation, [transcript MAC])
    application records                  <->     application records

The rules of which message may come in which state live in the `_TRANSITIONS` table of each class:
anything not in it is an `UnexpectedMessage`.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from lab.channel.errors import (
    ChainTooLarge,
    ChannelError,
    ConnectionClosedEarly,
    HandshakeTampered,
    KeyShareForged,
    LocalProtocolError,
    PeerRefused,
    PlaintextRefused,
    Refusal,
    RemoteProtocolError,
    StaleKeysFromEphemeralShare,
    StaleKeysFromServerRandom,
    UnexpectedMessage,
)
from lab.channel.frames import Frame, FrameBuffer, FrameType
from lab.channel.keys import SessionKeys, derive_session_keys, key_confirmation, transcript_mac
from lab.channel.messages import (
    RANDOM_SIZE,
    Alert,
    ClientHello,
    ClientKeyExchange,
    Finished,
    HandshakeMessage,
    MessageType,
    ServerHello,
    ServerKeyExchange,
    decode_handshake,
)
from lab.channel.protections import Protections
from lab.channel.records import RecordLayer
from lab.channel.suites import KeyExchange, RecordFeatures, Suite, choose_suite, offered_suites
from lab.pki.parse import MalformedCertificate, parse_certificate

PRE_MASTER_SIZE = 48
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def key_share_signed_data(client_random: bytes, server_random: bytes, share: bytes) -> bytes:
    """What the server signs in ServerKeyExchange: both randoms bind the share to this handshake."""
    return b"mitm-lab server key exchange" + client_random + server_random + share


def key_fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, as `SHA256:<hex>` (what known_hosts-style pins store)."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class VerifiedIdentity:
    """What the client's identity checks established about the server certificate."""

    public_key: rsa.RSAPublicKey
    subject: str
    fingerprint: str
    checks: tuple[str, ...]
    """The protection ids whose checks ran and passed."""
    pin: str | None = None
    """'recorded' on first use, 'matched' afterwards, None when pinning is off."""


class IdentityVerifier(Protocol):
    """Checks a certificate chain for the dialled name; raises the `Refusal` of the check that fails."""

    def verify(
        self,
        chain: Sequence[x509.Certificate],
        server_name: str,
        protections: Protections,
        now: datetime.datetime,
    ) -> VerifiedIdentity: ...


@dataclass(frozen=True)
class ClientConfig:
    protections: Protections
    server_name: str
    identity: IdentityVerifier
    now: Callable[[], datetime.datetime] = utc_now
    random: Callable[[int], bytes] = os.urandom
    suites: tuple[Suite, ...] | None = None
    """A cipher list that replaces the one the protections imply (for benchmarks); None: the protections'."""


class RecentClientHellos:
    """The client randoms a server has seen lately (shared by its connections), so that a refusal can
    say whether the flight it refused was a replay. It decides nothing: keys computed for another
    session fail their confirmation whether or not the random is remembered."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: dict[bytes, None] = {}
        self.size = size

    def seen_before(self, client_random: bytes) -> bool:
        """Whether this random was seen before; remembers it either way."""
        if client_random in self._seen:
            return True
        self._seen[client_random] = None
        if len(self._seen) > self.size:
            del self._seen[next(iter(self._seen))]
        return False


@dataclass(frozen=True)
class ServerConfig:
    protections: Protections
    certificate_chain: tuple[x509.Certificate, ...]
    private_key: rsa.RSAPrivateKey
    random: Callable[[int], bytes] = os.urandom
    hellos: RecentClientHellos | None = None
    """Shared by a server's connections; None: refusals cannot tell a replayed flight."""
    suites: tuple[Suite, ...] | None = None
    """A cipher list that replaces the one the protections imply (for benchmarks); None: the protections'."""


# Events ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeComplete:
    suite: Suite
    client_random: bytes
    server_random: bytes
    offered: tuple[Suite, ...]
    """The suites of the ClientHello as this endpoint sent (client) or received (server) it."""
    supported: tuple[Suite, ...]
    """What this endpoint's protections allow."""
    identity: VerifiedIdentity | None
    """The server's identity as the client verified it; None on the server."""
    keys: SessionKeys
    """For the lab key log (lab.channel.keylog): a capture of the session is readable with them."""


@dataclass(frozen=True)
class ApplicationData:
    seq: int
    data: bytes
    frame: Frame
    """The frame as received, for evidence digests."""


@dataclass(frozen=True)
class SentRecord:
    seq: int
    frame: bytes


Event = HandshakeComplete | ApplicationData


class State(enum.Enum):
    START = "start"
    WAIT_CLIENT_HELLO = "wait_client_hello"
    WAIT_SERVER_HELLO = "wait_server_hello"
    WAIT_SERVER_KEY_EXCHANGE = "wait_server_key_exchange"
    WAIT_CLIENT_KEY_EXCHANGE = "wait_client_key_exchange"
    WAIT_CLIENT_FINISHED = "wait_client_finished"
    WAIT_SERVER_FINISHED = "wait_server_finished"
    ESTABLISHED = "established"
    CLOSED = "closed"


_STEP_OF_STATE = {
    State.WAIT_CLIENT_HELLO: "client_hello",
    State.WAIT_SERVER_HELLO: "server_hello",
    State.WAIT_SERVER_KEY_EXCHANGE: "server_key_exchange",
    State.WAIT_CLIENT_KEY_EXCHANGE: "client_key_exchange",
    State.WAIT_CLIENT_FINISHED: "finished",
    State.WAIT_SERVER_FINISHED: "finished",
    State.ESTABLISHED: "record",
}

Handler = Callable[[Any, HandshakeMessage, bytes], list[Event]]
"""An unbound method of the endpoint class whose table holds it."""


@dataclass
class _Handshake:
    """What a handshake accumulates on its way to the session keys."""

    transcript: hashlib._Hash = field(default_factory=hashlib.sha256)
    client_random: bytes = b""
    server_random: bytes = b""
    offered: tuple[Suite, ...] = ()
    suite: Suite | None = None
    keys: SessionKeys | None = None
    identity: VerifiedIdentity | None = None
    ephemeral: X25519PrivateKey | None = None
    replayed_hello: bool = False
    """The server has seen this ClientHello's random before."""


class _Endpoint:
    _TRANSITIONS: ClassVar[dict[tuple[State, MessageType], Handler]]

    def __init__(
        self, protections: Protections, random: Callable[[int], bytes], suites: tuple[Suite, ...] | None
    ) -> None:
        self.protections = protections
        self.suites = suites or offered_suites(protections)
        """What this endpoint offers (client) or accepts (server), strongest first."""
        self._random = random
        self.state = State.START
        self._frames = FrameBuffer()
        self._outgoing = bytearray()
        self._handshake = _Handshake()
        self._records: RecordLayer | None = None
        self.deferred_error: ChannelError | None = None
        """An error that came after events already returned; the next call raises it."""

    # Public API --------------------------------------------------------------------------------------

    @property
    def suite(self) -> Suite | None:
        return self._handshake.suite

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer. Raises `Refusal`, `RemoteProtocolError` or `PeerRefused`.

        When the bytes hold good frames and then a bad one, the good frames' events are returned and
        the error is raised by the next call (as h11 does): nothing the peer sent validly is lost.
        """
        if self.deferred_error is not None:
            raise self.deferred_error
        if self.state is State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        events: list[Event] = []
        try:
            for frame in self._frames.feed(data):
                events += self._on_frame(frame)
        except ChannelError as exc:
            if isinstance(exc, PeerRefused):
                self.state = State.CLOSED
            else:
                self._alert(exc)
            if not events:
                raise
            self.deferred_error = exc
        return events

    def receive_eof(self) -> None:
        """The peer closed its side. Raises when that cut a frame or the handshake short."""
        if self.deferred_error is not None:
            raise self.deferred_error
        if self.state is not State.ESTABLISHED or self._frames.pending:
            step = _STEP_OF_STATE.get(self.state, "handshake")
            what = "a frame" if self._frames.pending else "the handshake"
            self.state = State.CLOSED
            raise ConnectionClosedEarly(f"the peer closed the connection in the middle of {what}", step=step)
        self.state = State.CLOSED

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def send_application_data(self, data: bytes) -> SentRecord:
        if self.deferred_error is not None:  # the peer already refused, or sent something bad
            raise self.deferred_error
        if self.state is not State.ESTABLISHED or self._records is None:
            raise LocalProtocolError(f"cannot send application data in state {self.state.value}")
        seq, body = self._records.seal(data)
        frame = Frame(FrameType.APPLICATION, body).encode()
        self._outgoing += frame
        return SentRecord(seq, frame)

    def abort(self, error: ChannelError) -> None:
        """Tell the peer why this side gives up (a timeout, a refusal above the channel) and close."""
        self._alert(error)

    # Internals ---------------------------------------------------------------------------------------

    def _alert(self, error: ChannelError) -> None:
        if self.state is State.CLOSED:
            return
        protection = error.protection if isinstance(error, Refusal) else ""
        self._outgoing += Frame(
            FrameType.ALERT, Alert(protection, error.step, error.message).encode()
        ).encode()
        self.state = State.CLOSED

    def _on_frame(self, frame: Frame) -> list[Event]:
        step = _STEP_OF_STATE.get(self.state, "handshake")
        if frame.type is FrameType.ALERT:
            alert = Alert.decode(frame.body)
            raise PeerRefused(alert.message, step=alert.step, protection=alert.protection or None)
        if frame.type is FrameType.APPLICATION:
            if self.state is not State.ESTABLISHED or self._records is None:
                raise UnexpectedMessage("application data before the handshake completed", step=step)
            seq, plaintext = self._records.open(frame.body)
            return [ApplicationData(seq, plaintext, frame)]
        message = decode_handshake(frame.body, step)
        handler = self._TRANSITIONS.get((self.state, message.msg_type))
        if handler is None:
            raise UnexpectedMessage(
                f"{type(message).__name__} is not allowed in state {self.state.value}", step=step
            )
        return handler(self, message, frame.body)

    def _send_handshake(self, message: HandshakeMessage) -> None:
        body = message.encode()
        self._handshake.transcript.update(body)
        self._outgoing += Frame(FrameType.HANDSHAKE, body).encode()

    def _transcript_hash(self) -> bytes:
        return self._handshake.transcript.copy().digest()

    def _finished(self, finished_key: bytes) -> Finished:
        mac = transcript_mac(finished_key, self._transcript_hash()) if self.protections.transcript else b""
        return Finished(key_confirmation(finished_key), mac)

    def _check_transcript(self, received: Finished, finished_key: bytes, who: str) -> None:
        if not self.protections.transcript:
            return
        if not received.transcript_mac:
            raise HandshakeTampered(f"the {who}'s Finished carries no transcript MAC", step="finished")
        expected = transcript_mac(finished_key, self._transcript_hash())
        if not hmac.compare_digest(received.transcript_mac, expected):
            raise HandshakeTampered(
                f"the {who} saw a different handshake: its Finished MAC does not match our transcript",
                step="finished",
            )

    def _start_records(self, *, is_client: bool) -> None:
        hs = self._handshake
        assert hs.keys is not None and hs.suite is not None
        own, peer = (hs.keys.client_write, hs.keys.server_write)[:: 1 if is_client else -1]
        self._records = RecordLayer(
            hs.suite.record,
            write_keys=own,
            read_keys=peer,
            sequence_numbers=self.protections.sequence_numbers,
            random=self._random,
        )
        self.state = State.ESTABLISHED

    def _complete(self) -> HandshakeComplete:
        hs = self._handshake
        assert hs.suite is not None and hs.keys is not None
        return HandshakeComplete(
            suite=hs.suite,
            client_random=hs.client_random,
            server_random=hs.server_random,
            offered=hs.offered,
            supported=self.suites,
            identity=hs.identity,
            keys=hs.keys,
        )


class ClientConnection(_Endpoint):
    def __init__(self, config: ClientConfig) -> None:
        super().__init__(config.protections, config.random, config.suites)
        self.config = config

    def start(self) -> None:
        if self.state is not State.START:
            raise LocalProtocolError("start() called twice")
        hs = self._handshake
        hs.client_random = self._random(RANDOM_SIZE)
        hs.offered = self.suites
        features = RecordFeatures.of(self.protections)
        self._send_handshake(ClientHello(hs.client_random, features, tuple(s.code for s in hs.offered)))
        self.state = State.WAIT_SERVER_HELLO

    def _on_server_hello(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, ServerHello)
        hs = self._handshake
        suite = Suite.from_code(message.suite_code)
        if suite is None or suite not in hs.offered:
            name = suite.name if suite else f"0x{message.suite_code:04x}"
            if suite is not None and not suite.record.encrypts and self.protections.encryption:
                raise PlaintextRefused(
                    f"the server chose {name}, which does not encrypt", step="server_hello"
                )
            raise RemoteProtocolError(
                f"the server chose {name}, which the client did not offer", step="server_hello"
            )
        hs.transcript.update(raw)
        hs.suite, hs.server_random = suite, message.random
        hs.identity = self.config.identity.verify(
            _parse_chain(message.certificate_chain, self.protections),
            self.config.server_name,
            self.protections,
            self.config.now(),
        )
        if suite.key_exchange is KeyExchange.ECDHE:
            self.state = State.WAIT_SERVER_KEY_EXCHANGE
            return []
        pre_master = self._random(PRE_MASTER_SIZE)
        try:
            encrypted = hs.identity.public_key.encrypt(pre_master, OAEP)
        except ValueError:
            raise RemoteProtocolError(
                f"the certificate's {hs.identity.public_key.key_size}-bit RSA key is too small for RSA-OAEP",
                step="server_certificate",
            ) from None
        self._send_key_exchange(encrypted, pre_master)
        return []

    def _on_server_key_exchange(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, ServerKeyExchange)
        hs = self._handshake
        assert hs.identity is not None
        try:
            hs.identity.public_key.verify(
                message.signature,
                key_share_signed_data(hs.client_random, hs.server_random, message.share),
                PSS,
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise KeyShareForged(
                "the X25519 share is not signed by the certificate's key", step="server_key_exchange"
            ) from None
        hs.transcript.update(raw)
        ephemeral = X25519PrivateKey.from_private_bytes(self._random(32))
        pre_master = _x25519(ephemeral, message.share, "server_key_exchange")
        share = ephemeral.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._send_key_exchange(share, pre_master)
        return []

    def _send_key_exchange(self, exchange: bytes, pre_master: bytes) -> None:
        hs = self._handshake
        hs.keys = derive_session_keys(
            pre_master,
            hs.client_random,
            hs.server_random,
            per_direction_keys=self.protections.per_direction_keys,
        )
        self._send_handshake(ClientKeyExchange(exchange))
        self._send_handshake(self._finished(hs.keys.client_finished))
        self.state = State.WAIT_SERVER_FINISHED

    def _on_server_finished(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, Finished)
        hs = self._handshake
        assert hs.keys is not None
        if not hmac.compare_digest(message.key_confirmation, key_confirmation(hs.keys.server_finished)):
            raise RemoteProtocolError(
                "the server's Finished does not confirm this session's keys", step="finished"
            )
        self._check_transcript(message, hs.keys.server_finished, "server")
        hs.transcript.update(raw)
        self._start_records(is_client=True)
        return [self._complete()]

    _TRANSITIONS: ClassVar[dict[tuple[State, MessageType], Handler]] = {
        (State.WAIT_SERVER_HELLO, MessageType.SERVER_HELLO): _on_server_hello,
        (State.WAIT_SERVER_KEY_EXCHANGE, MessageType.SERVER_KEY_EXCHANGE): _on_server_key_exchange,
        (State.WAIT_SERVER_FINISHED, MessageType.FINISHED): _on_server_finished,
    }


class ServerConnection(_Endpoint):
    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config.protections, config.random, config.suites)
        self.config = config
        self.state = State.WAIT_CLIENT_HELLO

    def _on_client_hello(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, ClientHello)
        hs = self._handshake
        hs.transcript.update(raw)
        hs.client_random, hs.offered = message.random, message.suites
        hs.replayed_hello = bool(self.config.hellos and self.config.hellos.seen_before(message.random))
        own = RecordFeatures.of(self.protections)
        if message.features != own:
            raise RemoteProtocolError(
                f"the client's record layer ({message.features.describe()}) differs from the server's "
                f"({own.describe()})",
                step="client_hello",
            )
        suite = choose_suite(hs.offered, self.suites)
        if suite is None:
            raise RemoteProtocolError(
                "no suite in common: the client offers "
                + (", ".join(s.name for s in hs.offered) or "nothing the lab knows"),
                step="client_hello",
            )
        hs.suite = suite
        hs.server_random = self._random(RANDOM_SIZE) if self.protections.server_random else bytes(RANDOM_SIZE)
        chain = tuple(cert.public_bytes(serialization.Encoding.DER) for cert in self.config.certificate_chain)
        self._send_handshake(ServerHello(hs.server_random, hs.suite.code, chain))
        if hs.suite.key_exchange is KeyExchange.ECDHE:
            hs.ephemeral = X25519PrivateKey.from_private_bytes(self._random(32))
            share = hs.ephemeral.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            signature = self.config.private_key.sign(
                key_share_signed_data(hs.client_random, hs.server_random, share), PSS, hashes.SHA256()
            )
            self._send_handshake(ServerKeyExchange(share, signature))
        self.state = State.WAIT_CLIENT_KEY_EXCHANGE
        return []

    def _on_client_key_exchange(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, ClientKeyExchange)
        hs = self._handshake
        if hs.ephemeral is not None:
            pre_master = _x25519(hs.ephemeral, message.exchange, "client_key_exchange")
        else:
            try:
                pre_master = self.config.private_key.decrypt(message.exchange, OAEP)
            except ValueError:
                raise RemoteProtocolError(
                    "the pre-master secret does not decrypt under the server key", step="client_key_exchange"
                ) from None
            if len(pre_master) != PRE_MASTER_SIZE:
                raise RemoteProtocolError(
                    f"the pre-master secret is {len(pre_master)} bytes, not {PRE_MASTER_SIZE}",
                    step="client_key_exchange",
                )
        hs.transcript.update(raw)
        hs.keys = derive_session_keys(
            pre_master,
            hs.client_random,
            hs.server_random,
            per_direction_keys=self.protections.per_direction_keys,
        )
        self.state = State.WAIT_CLIENT_FINISHED
        return []

    def _on_client_finished(self, message: HandshakeMessage, raw: bytes) -> list[Event]:
        assert isinstance(message, Finished)
        hs = self._handshake
        assert hs.keys is not None and hs.suite is not None
        if not hmac.compare_digest(message.key_confirmation, key_confirmation(hs.keys.client_finished)):
            raise self._stale_keys()
        self._check_transcript(message, hs.keys.client_finished, "client")
        hs.transcript.update(raw)
        self._send_handshake(self._finished(hs.keys.server_finished))
        self._start_records(is_client=False)
        return [self._complete()]

    def _stale_keys(self) -> ChannelError:
        """The client's Finished was computed for other keys. For a ClientHello seen before (a replayed
        flight), name this server's fresh contribution that made the keys differ."""
        hs = self._handshake
        if not hs.replayed_hello:
            return RemoteProtocolError(
                "the client's Finished does not confirm this session's keys: the key exchange was altered",
                step="finished",
            )
        if self.protections.server_random:
            return StaleKeysFromServerRandom(
                "a replayed flight: this ClientHello was seen before, and its Finished was computed for "
                "another server random",
                step="finished",
            )
        if hs.ephemeral is not None:
            return StaleKeysFromEphemeralShare(
                "a replayed flight: this ClientHello was seen before, and its Finished was computed for "
                "another ephemeral share",
                step="finished",
            )
        return RemoteProtocolError("a replayed flight whose keys still differ", step="finished")

    _TRANSITIONS: ClassVar[dict[tuple[State, MessageType], Handler]] = {
        (State.WAIT_CLIENT_HELLO, MessageType.CLIENT_HELLO): _on_client_hello,
        (State.WAIT_CLIENT_KEY_EXCHANGE, MessageType.CLIENT_KEY_EXCHANGE): _on_client_key_exchange,
        (State.WAIT_CLIENT_FINISHED, MessageType.FINISHED): _on_client_finished,
    }


MAX_CHAIN_CERTIFICATES = 4
"""The leaf and up to three intermediates: the lab sends its leaf alone, a Web PKI server one or two."""
MAX_CHAIN_BYTES = 16 * 1024
"""All the DER together: the lab's leaf is about 700 bytes, a Web PKI chain some 4,000."""


def _parse_chain(chain: tuple[bytes, ...], protections: Protections) -> list[x509.Certificate]:
    """The chain, capped before anything is parsed or verified; a malformed certificate fails here, as
    the peer's protocol error, never later inside a check.

    Over the cap, `ca_trust` refuses: it is the check whose path building a long hostile chain would
    stall. With `ca_trust` off nothing builds a path, and the cap is the protocol's limit.
    """
    size = sum(len(der) for der in chain)
    if len(chain) > MAX_CHAIN_CERTIFICATES or size > MAX_CHAIN_BYTES:
        message = (
            f"a chain of {len(chain)} certificates, {size} bytes: over the cap of "
            f"{MAX_CHAIN_CERTIFICATES} certificates, {MAX_CHAIN_BYTES} bytes"
        )
        if protections.ca_trust:
            raise ChainTooLarge(message, step="server_certificate")
        raise RemoteProtocolError(message, step="server_certificate")
    try:
        return [parse_certificate(der) for der in chain]
    except MalformedCertificate as exc:
        raise RemoteProtocolError(str(exc), step="server_certificate") from None


def _x25519(private: X25519PrivateKey, peer_share: bytes, step: str) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_share))
    except ValueError as exc:
        raise RemoteProtocolError(f"unusable X25519 share: {exc}", step=step) from None
