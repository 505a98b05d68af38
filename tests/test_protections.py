"""Every protection in pairs, as h2's tests do: on, the tampering it exists for raises its typed refusal
naming it and the step; off, the same tampering goes through. The tampering is done here, in the test."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from lab.channel import errors
from lab.channel.connection import OAEP, ApplicationData, RecentClientHellos, ServerConfig, ServerConnection
from lab.channel.frames import Frame, FrameType
from lab.channel.keys import derive_session_keys
from lab.channel.messages import (
    ClientHello,
    ClientKeyExchange,
    ServerHello,
    ServerKeyExchange,
    decode_handshake,
)
from lab.channel.protections import NONE, PROTECTION_IDS, RECOMMENDED, Protections
from lab.channel.records import RecordLayer
from lab.channel.suites import KeyExchange, RecordProtection, Suite
from lab.state import StateDir
from tests.pair import Pair, Tamper, make_pair

APPLICATION = FrameType.APPLICATION


def frame_type(frame: bytes) -> FrameType:
    return FrameType(frame[0])


def body(frame: bytes) -> bytes:
    return frame[3:]


def with_body(frame: bytes, new_body: bytes) -> bytes:
    return Frame(frame_type(frame), new_body).encode()


def refused(exc: pytest.ExceptionInfo[errors.Refusal], protection: str, step: str) -> None:
    assert exc.value.protection == protection
    assert exc.value.step == step


def on_nth_client_record(n: int, action: Callable[[bytes], list[bytes]]) -> Tamper:
    """Apply `action` to the n-th application frame the client sends (0-based); pass the rest."""
    seen = {"count": 0}

    def tamper(direction: str, frame: bytes) -> list[bytes]:
        if direction == "c2s" and frame_type(frame) is APPLICATION:
            index = seen["count"]
            seen["count"] += 1
            if index == n:
                return action(frame)
        return [frame]

    return tamper


# Identity checks: the attacker presents the certificates it holds --------------------------------------


@pytest.mark.parametrize(
    ("leaf", "protection", "error"),
    [
        ("self-signed", "ca_trust", errors.CertificateUntrusted),
        ("rogue-bank.lab", "ca_trust", errors.CertificateUntrusted),
        ("attacker.lab", "hostname", errors.HostnameMismatch),
        ("expired", "validity", errors.CertificateNotValidNow),
    ],
)
def test_forged_certificate_is_refused_only_by_its_protection(
    state: StateDir, leaf: str, protection: str, error: type[errors.Refusal]
) -> None:
    with pytest.raises(error) as caught:
        make_pair(state, RECOMMENDED, server_leaf=leaf).handshake()
    refused(caught, protection, "server_certificate")

    done = make_pair(state, RECOMMENDED.without(protection), server_leaf=leaf).handshake()
    assert done.identity is not None and protection not in done.identity.checks


def test_swapped_public_key_breaks_the_ca_signature(state: StateDir) -> None:
    """The server's own certificate with the attacker's key put in: the CA's signature no longer holds."""
    real = state.server_leaf().certificate
    forged = state.attacker_leaf("self-signed")
    real_der = real.public_bytes(serialization.Encoding.DER)
    old_spki = real.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    new_spki = forged.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped_der = real_der.replace(old_spki, new_spki)
    assert swapped_der != real_der

    def swap_key(direction: str, frame: bytes) -> list[bytes]:
        if direction == "s2c" and body(frame)[0] == ServerHello.msg_type:
            hello = decode_handshake(body(frame), "server_hello")
            assert isinstance(hello, ServerHello)
            swapped = ServerHello(hello.random, hello.suite_code, (swapped_der,))
            return [with_body(frame, swapped.encode())]
        return [frame]

    with pytest.raises(errors.CertificateUntrusted) as caught:
        make_pair(state, RECOMMENDED, tamper=swap_key).handshake()
    refused(caught, "ca_trust", "server_certificate")


def test_pinning_records_on_first_use_and_refuses_a_changed_key(state: StateDir) -> None:
    pinned = RECOMMENDED.plus("pinning")
    first = make_pair(state, pinned).handshake()
    assert first.identity is not None and first.identity.pin == "recorded"
    assert make_pair(state, pinned).handshake().identity.pin == "matched"  # type: ignore[union-attr]

    # Even with the CA check off, the pin catches the attacker's self-signed key...
    with pytest.raises(errors.PinnedKeyChanged) as caught:
        make_pair(state, pinned.without("ca_trust"), server_leaf="self-signed").handshake()
    refused(caught, "pinning", "server_certificate")
    # ... and the expired certificate's leaked key, a different key under the same name.
    with pytest.raises(errors.PinnedKeyChanged):
        make_pair(state, pinned.without("validity"), server_leaf="expired").handshake()
    # Without pinning, the self-signed key goes through.
    make_pair(state, RECOMMENDED.without("ca_trust"), server_leaf="self-signed").handshake()


def test_a_pin_made_while_the_attacker_is_in_the_middle_pins_the_attacker(state: StateDir) -> None:
    pinned = RECOMMENDED.plus("pinning").without("ca_trust")
    make_pair(state, pinned, server_leaf="self-signed").handshake()
    with pytest.raises(errors.PinnedKeyChanged):
        make_pair(state, pinned).handshake()  # now the real server is the stranger


# Encryption -------------------------------------------------------------------------------------------


def test_encryption_refuses_a_server_that_picks_plaintext(state: StateDir) -> None:
    null = Suite(RecordProtection.NULL, KeyExchange.RSA)

    def pick_plaintext(direction: str, frame: bytes) -> list[bytes]:
        if direction == "s2c" and body(frame)[0] == ServerHello.msg_type:
            hello = decode_handshake(body(frame), "server_hello")
            assert isinstance(hello, ServerHello)
            return [with_body(frame, ServerHello(hello.random, null.code, hello.certificate_chain).encode())]
        return [frame]

    with pytest.raises(errors.PlaintextRefused) as caught:
        make_pair(state, RECOMMENDED, tamper=pick_plaintext).handshake()
    refused(caught, "encryption", "server_hello")


# Record integrity: MAC, sequence numbers, per-direction keys --------------------------------------------


def flip(position: int, mask: int) -> Callable[[bytes], list[bytes]]:
    def action(frame: bytes) -> list[bytes]:
        data = bytearray(frame)
        data[position] ^= mask
        return [bytes(data)]

    return action


def test_mac_refuses_a_flipped_ciphertext_byte(state: StateDir) -> None:
    # AES-GCM: the byte after the 12-byte nonce is the first ciphertext byte.
    pair = make_pair(state, RECOMMENDED, tamper=on_nth_client_record(0, flip(3 + 12, 0x01)))
    pair.handshake()
    with pytest.raises(errors.RecordTampered) as caught:
        pair.client_sends(b"amount=100")
    refused(caught, "mac", "record")


@pytest.mark.parametrize("record", [r for r in RecordProtection if r.authenticates])
def test_mac_refuses_any_flipped_bit_for_every_authenticated_record_protection(
    record: RecordProtection,
) -> None:
    keys = derive_session_keys(b"pre-master", bytes(32), bytes(32), per_direction_keys=True)
    sender = RecordLayer(
        record,
        write_keys=keys.client_write,
        read_keys=keys.server_write,
        sequence_numbers=True,
        random=os.urandom,
    )
    receiver = RecordLayer(
        record,
        write_keys=keys.server_write,
        read_keys=keys.client_write,
        sequence_numbers=True,
        random=os.urandom,
    )
    _, sealed = sender.seal(b'{"op":"transfer","to":"bob","amount":100}')
    for position in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[position] ^= 0x80
        with pytest.raises(errors.RecordTampered):
            receiver.open(bytes(flipped))
    assert receiver.open(sealed)[1] == b'{"op":"transfer","to":"bob","amount":100}'


def test_without_mac_a_bit_flip_changes_the_plaintext_undetected(state: StateDir) -> None:
    # AES-CTR, 16-byte nonce: flipping ciphertext bit i flips plaintext bit i. 'b' ^ 'e' turns bob into eve.
    plaintext = b'{"to":"bob"}'
    at = plaintext.index(b"bob")
    mask = bytes(a ^ b for a, b in zip(b"bob", b"eve", strict=True))

    def to_eve(frame: bytes) -> list[bytes]:
        data = bytearray(frame)
        for i, m in enumerate(mask):
            data[3 + 16 + at + i] ^= m
        return [bytes(data)]

    pair = make_pair(state, RECOMMENDED.without("mac"), tamper=on_nth_client_record(0, to_eve))
    assert pair.handshake().suite.record is RecordProtection.AES128_CTR
    assert pair.client_sends(plaintext) == [b'{"to":"eve"}']


def test_sequence_numbers_refuse_a_repeated_record(state: StateDir) -> None:
    def repeat() -> Tamper:
        return on_nth_client_record(0, lambda frame: [frame, frame])

    pair = make_pair(state, RECOMMENDED, tamper=repeat())
    pair.handshake()
    with pytest.raises(errors.RecordOutOfSequence) as caught:
        pair.client_sends(b"transfer 100 to bob")
    refused(caught, "sequence_numbers", "record")
    assert "replay of record #0" in caught.value.message

    pair = make_pair(state, RECOMMENDED.without("sequence_numbers"), tamper=repeat())
    pair.handshake()
    assert pair.client_sends(b"transfer 100 to bob") == [b"transfer 100 to bob"] * 2


def test_sequence_numbers_refuse_a_replay_later_in_the_stream(state: StateDir) -> None:
    recorded: list[bytes] = []

    def record_then_replay(direction: str, frame: bytes) -> list[bytes]:
        if direction == "c2s" and frame_type(frame) is APPLICATION:
            recorded.append(frame)
            if len(recorded) == 3:
                return [recorded[0]]  # the third record is swapped for the first
        return [frame]

    pair = make_pair(state, RECOMMENDED, tamper=record_then_replay)
    pair.handshake()
    pair.client_sends(b"a")
    pair.client_sends(b"b")
    with pytest.raises(errors.RecordOutOfSequence):
        pair.client_sends(b"c")


def reflect_first_client_record(pair_holder: list[Pair]) -> Tamper:
    """Drop the client's first record and send it back to the client in place of the server's reply."""

    def tamper(direction: str, frame: bytes) -> list[bytes]:
        if direction == "c2s" and frame_type(frame) is APPLICATION:
            pair = pair_holder[0]
            pair.client_events += pair.client.receive_data(frame)  # straight back to its sender
            return []
        return [frame]

    return tamper


@pytest.mark.parametrize("sequence_numbers", [True, False])
def test_per_direction_keys_refuse_a_reflected_record(state: StateDir, sequence_numbers: bool) -> None:
    protections = RECOMMENDED.with_switches({"sequence_numbers": sequence_numbers})
    holder: list[Pair] = []
    pair = make_pair(state, protections, tamper=reflect_first_client_record(holder))
    holder.append(pair)
    pair.handshake()
    with pytest.raises(errors.RecordReflected) as caught:
        pair.client_sends(b"login alice")
    refused(caught, "per_direction_keys", "record")


def test_without_per_direction_keys_the_client_accepts_its_own_record_as_the_servers(state: StateDir) -> None:
    """Seed 003: with one key, a message thrown straight back decrypts, and seems to come from the server.
    Sequence numbers do not help: the client's record #0 arrives where the server's #0 is expected."""
    holder: list[Pair] = []
    pair = make_pair(
        state, RECOMMENDED.without("per_direction_keys"), tamper=reflect_first_client_record(holder)
    )
    holder.append(pair)
    pair.handshake()
    pair.client.send_application_data(b"login alice")
    pair.pump()
    received = [e.data for e in pair.client_events if isinstance(e, ApplicationData)]
    assert received == [b"login alice"]


# The handshake: transcript, server random, forward secrecy ----------------------------------------------


def strip_strong_suites(direction: str, frame: bytes) -> list[bytes]:
    if (
        direction == "c2s"
        and frame_type(frame) is FrameType.HANDSHAKE
        and body(frame)[0] == ClientHello.msg_type
    ):
        hello = decode_handshake(body(frame), "client_hello")
        assert isinstance(hello, ClientHello)
        legacy = Suite(RecordProtection.AES128_CTR, KeyExchange.RSA)
        return [with_body(frame, ClientHello(hello.random, hello.features, (legacy.code,)).encode())]
    return [frame]


def test_transcript_refuses_a_clienthello_with_its_strong_suites_stripped(state: StateDir) -> None:
    with pytest.raises(errors.HandshakeTampered) as caught:
        make_pair(state, RECOMMENDED, tamper=strip_strong_suites).handshake()
    refused(caught, "transcript", "finished")

    done = make_pair(state, RECOMMENDED.without("transcript"), tamper=strip_strong_suites).handshake()
    assert done.suite == Suite(RecordProtection.AES128_CTR, KeyExchange.RSA)


def test_transcript_refuses_a_finished_without_its_transcript_mac(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED, RECOMMENDED.without("transcript"))
    with pytest.raises(errors.HandshakeTampered, match="no transcript MAC"):
        pair.handshake()


def record_client_flight(
    state: StateDir, protections: Protections, hellos: RecentClientHellos
) -> list[bytes]:
    """Run a session (login, transfer); return every frame the client sent, as an attacker records it."""
    flight: list[bytes] = []

    def recorder(direction: str, frame: bytes) -> list[bytes]:
        if direction == "c2s":
            flight.append(frame)
        return [frame]

    pair = make_pair(state, protections, tamper=recorder, hellos=hellos)
    pair.handshake()
    pair.client_sends(b"login alice")
    pair.client_sends(b"transfer 100 to bob")
    return flight


def replay_into_new_connection(
    state: StateDir, protections: Protections, flight: list[bytes], hellos: RecentClientHellos
) -> list[bytes]:
    """The same server (it remembers the ClientHellos it saw) receives the recorded flight again."""
    leaf = state.server_leaf()
    server = ServerConnection(ServerConfig(protections, leaf.chain, leaf.private_key, hellos=hellos))
    delivered: list[bytes] = []
    for frame in flight:
        delivered += [e.data for e in server.receive_data(frame) if isinstance(e, ApplicationData)]
    return delivered


def test_server_random_refuses_a_client_flight_replayed_into_a_new_connection(state: StateDir) -> None:
    protections = RECOMMENDED.without("forward_secrecy")  # RSA: the recorded pre-master still decrypts
    hellos = RecentClientHellos()
    flight = record_client_flight(state, protections, hellos)
    with pytest.raises(errors.StaleKeysFromServerRandom) as caught:
        replay_into_new_connection(state, protections, flight, hellos)
    refused(caught, "server_random", "finished")

    weak = protections.without("server_random")
    flight = record_client_flight(state, weak, hellos)
    assert replay_into_new_connection(state, weak, flight, hellos) == [b"login alice", b"transfer 100 to bob"]


def test_forward_secrecy_alone_also_refuses_a_replayed_flight(state: StateDir) -> None:
    """With no server random, the fresh ephemeral share makes the replayed keys stale on its own."""
    protections = RECOMMENDED.without("server_random")
    hellos = RecentClientHellos()
    flight = record_client_flight(state, protections, hellos)
    with pytest.raises(errors.StaleKeysFromEphemeralShare) as caught:
        replay_into_new_connection(state, protections, flight, hellos)
    refused(caught, "forward_secrecy", "finished")


def test_a_key_exchange_altered_on_the_wire_is_not_called_a_replay(state: StateDir) -> None:
    """Keys that differ for a ClientHello never seen before: no fresh input to blame, a protocol error."""

    def swap_pre_master(direction: str, frame: bytes) -> list[bytes]:
        if direction == "c2s" and body(frame)[0] == ClientKeyExchange.msg_type:
            key = state.server_leaf().private_key.public_key()
            return [with_body(frame, ClientKeyExchange(key.encrypt(bytes(48), OAEP)).encode())]
        return [frame]

    protections = RECOMMENDED.without("forward_secrecy")
    pair = make_pair(state, protections, tamper=swap_pre_master, hellos=RecentClientHellos())
    with pytest.raises(errors.RemoteProtocolError, match="key exchange was altered") as caught:
        pair.handshake()
    assert not isinstance(caught.value, errors.Refusal) and caught.value.step == "finished"


def test_forward_secrecy_refuses_a_key_share_not_signed_by_the_certificate(state: StateDir) -> None:
    def swap_share(direction: str, frame: bytes) -> list[bytes]:
        if direction == "s2c" and body(frame)[0] == ServerKeyExchange.msg_type:
            kx = decode_handshake(body(frame), "server_key_exchange")
            assert isinstance(kx, ServerKeyExchange)
            return [with_body(frame, ServerKeyExchange(bytes(range(1, 33)), kx.signature).encode())]
        return [frame]

    with pytest.raises(errors.KeyShareForged) as caught:
        make_pair(state, RECOMMENDED, tamper=swap_share).handshake()
    refused(caught, "forward_secrecy", "server_key_exchange")


def decrypt_recording_with_stolen_key(
    state: StateDir, wire: list[tuple[str, bytes]], protections: Protections
) -> bytes:
    """What a thief holding the server key recovers from a recorded session's first client record."""
    frames = list(wire)
    handshake = [
        decode_handshake(body(f), "handshake") for _, f in frames if frame_type(f) is FrameType.HANDSHAKE
    ]
    hello = next(m for m in handshake if isinstance(m, ClientHello))
    server_hello = next(m for m in handshake if isinstance(m, ServerHello))
    exchange = next(m for m in handshake if isinstance(m, ClientKeyExchange))
    pre_master = state.server_leaf().private_key.decrypt(
        exchange.exchange, OAEP
    )  # raises if not RSA transport
    keys = derive_session_keys(
        pre_master, hello.random, server_hello.random, per_direction_keys=protections.per_direction_keys
    )
    suite = Suite.from_code(server_hello.suite_code)
    assert suite is not None
    layer = RecordLayer(
        suite.record,
        write_keys=keys.server_write,
        read_keys=keys.client_write,
        sequence_numbers=protections.sequence_numbers,
        random=bytes,
    )
    record = next(f for d, f in frames if d == "c2s" and frame_type(f) is APPLICATION)
    return layer.open(body(record))[1]


def test_forward_secrecy_keeps_a_recording_secret_from_whoever_steals_the_server_key(state: StateDir) -> None:
    weak = RECOMMENDED.without("forward_secrecy")
    pair = make_pair(state, weak)
    pair.handshake()
    pair.client_sends(b"password=hunter2")
    assert decrypt_recording_with_stolen_key(state, pair.wire, weak) == b"password=hunter2"

    pair = make_pair(state, RECOMMENDED)
    assert pair.handshake().suite.key_exchange is KeyExchange.ECDHE
    pair.client_sends(b"password=hunter2")
    with pytest.raises(ValueError):  # the ClientKeyExchange is an X25519 share, not an RSA ciphertext
        decrypt_recording_with_stolen_key(state, pair.wire, RECOMMENDED)


def test_every_protection_has_a_refusal_type() -> None:
    def refusal_types(cls: type[errors.Refusal]) -> list[type[errors.Refusal]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *refusal_types(sub))]

    assert {c.protection for c in refusal_types(errors.Refusal)} == set(PROTECTION_IDS)


def test_none_profile_runs_with_no_check_at_all(state: StateDir) -> None:
    done = make_pair(state, NONE, server_leaf="expired").handshake()
    assert done.identity is not None and done.identity.checks == ()
