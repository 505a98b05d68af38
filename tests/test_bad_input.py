"""Arbitrary and mutated bytes into the frame parser and both state machines: only typed errors come out.

Property-based (hypothesis): whatever arrives, an endpoint either makes progress or raises a
`ChannelError` subclass (a refusal, a protocol error, or the peer's alert); never anything else.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.channel.connection import ClientConfig, ClientConnection, ServerConfig, ServerConnection
from lab.channel.errors import (
    ChannelError,
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
)
from lab.channel.frames import HEADER, MAX_BODY, MAX_RECORD_PLAINTEXT, FrameBuffer, FrameType
from lab.channel.keys import DirectionKeys
from lab.channel.messages import ClientHello
from lab.channel.protections import NONE, RECOMMENDED, Protections
from lab.channel.records import RecordLayer
from lab.channel.suites import RecordFeatures, RecordProtection, offered_suites
from lab.channel.verify import LabTrust
from lab.pki.authority import Leaf
from lab.state import SERVER_NAME, StateDir
from tests.pair import HandshakeNeverCompleted, make_pair

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@functools.cache
def fixed_state() -> StateDir:
    """One state directory for all fuzz examples (hypothesis runs many examples per test)."""
    state = StateDir(Path(tempfile.mkdtemp(prefix="mitmlab-fuzz-")))
    state.create(datetime.datetime.now(datetime.UTC))
    return state


@functools.cache
def server_leaf() -> Leaf:
    return fixed_state().server_leaf()


@functools.cache
def trust() -> LabTrust:
    return fixed_state().trust()


def server(protections: Protections = RECOMMENDED) -> ServerConnection:
    leaf = server_leaf()
    return ServerConnection(ServerConfig(protections, leaf.chain, leaf.private_key))


def started_client(protections: Protections = RECOMMENDED) -> ClientConnection:
    client = ClientConnection(ClientConfig(protections, SERVER_NAME, trust()))
    client.start()
    client.data_to_send()
    return client


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """`data` cut at the given points (taken modulo its length): how TCP might deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        yield data[start:end]


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8))
def test_frame_buffer_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    buffer = FrameBuffer()
    with contextlib.suppress(RemoteProtocolError):
        for chunk in chunks(data, cuts):
            buffer.feed(chunk)


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_server_raises_only_channel_errors_on_arbitrary_bytes(
    data: bytes, cuts: list[int], weak: bool
) -> None:
    endpoint = server(NONE if weak else RECOMMENDED)
    with contextlib.suppress(ChannelError):
        for chunk in chunks(data, cuts):
            endpoint.receive_data(chunk)


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=8))
def test_client_raises_only_channel_errors_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    endpoint = started_client()
    with contextlib.suppress(ChannelError):
        for chunk in chunks(data, cuts):
            endpoint.receive_data(chunk)


@settings(FUZZ, max_examples=150)
@given(st.data())
def test_both_machines_survive_a_mutated_real_handshake(data: st.DataObject) -> None:
    """Flip, cut or extend one frame of a real handshake in flight: typed errors only."""
    protections = data.draw(st.sampled_from([RECOMMENDED, NONE, RECOMMENDED.without("forward_secrecy")]))
    target = data.draw(st.integers(min_value=0, max_value=6))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "zero_length"]))
    seen = {"n": 0}

    def tamper(direction: str, frame: bytes) -> list[bytes]:
        index = seen["n"]
        seen["n"] += 1
        if index != target:
            return [frame]
        if mutation == "flip":
            at = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
            mutated = bytearray(frame)
            mutated[at] ^= data.draw(st.integers(min_value=1, max_value=255))
            return [bytes(mutated)]
        if mutation == "truncate":
            return [frame[: data.draw(st.integers(min_value=0, max_value=len(frame) - 1))]]
        if mutation == "extend":
            return [frame + data.draw(st.binary(min_size=1, max_size=64))]
        return [frame[:1] + b"\x00\x00"]

    pair = make_pair(fixed_state(), protections, tamper=tamper)
    try:
        pair.handshake()
        pair.client_sends(b"after the handshake")
        pair.server_sends(b"and back")
    except (ChannelError, HandshakeNeverCompleted):
        pass  # HandshakeNeverCompleted: a cut frame (or a flipped length) leaves its receiver waiting


@FUZZ
@given(st.lists(st.integers(min_value=0), max_size=12))
def test_reassembly_completes_a_handshake_cut_into_any_pieces(cuts: list[int]) -> None:
    """TCP delivers chunks, not frames: a flight split anywhere still completes the handshake."""
    client = ClientConnection(ClientConfig(RECOMMENDED, SERVER_NAME, trust()))
    srv = server()
    client.start()
    events = []
    for sender, receiver in [(client, srv), (srv, client), (client, srv), (srv, client)]:
        for chunk in chunks(sender.data_to_send(), cuts):
            events += receiver.receive_data(chunk)
    assert [type(e).__name__ for e in events] == ["HandshakeComplete", "HandshakeComplete"]


def test_oversized_frame_header_is_refused_before_the_body_arrives() -> None:
    with pytest.raises(FrameTooLarge) as caught:
        FrameBuffer().feed(HEADER.pack(FrameType.HANDSHAKE, MAX_BODY + 1))
    assert caught.value.step == "record"


def test_unknown_frame_type_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown frame type 99"):
        FrameBuffer().feed(b"\x63\x00\x01x")


def test_out_of_order_message_names_the_step_expected() -> None:
    srv = server()
    with pytest.raises(RemoteProtocolError) as caught:
        srv.receive_data(HEADER.pack(FrameType.APPLICATION, 3) + b"abc")
    assert caught.value.step == "client_hello"
    assert "before the handshake" in caught.value.message


def test_an_error_queues_an_alert_for_the_peer() -> None:
    srv = server()
    with pytest.raises(RemoteProtocolError):
        srv.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    alert = srv.data_to_send()
    assert alert[0] == FrameType.ALERT


def test_unknown_feature_bits_in_a_client_hello_are_named_as_such() -> None:
    """0x04 is no record-layer feature: the hello is refused for it, not for a mismatch of known ones."""
    hello = ClientHello(bytes(32), RecordFeatures.ALL, tuple(s.code for s in offered_suites(RECOMMENDED)))
    body = bytearray(hello.encode())
    body[1 + 32] = 0x07
    with pytest.raises(RemoteProtocolError, match="unknown record-layer feature bits 0x07"):
        server().receive_data(HEADER.pack(FrameType.HANDSHAKE, len(body)) + bytes(body))


def test_a_record_longer_than_the_plaintext_limit_is_refused_both_ways() -> None:
    """16 KiB of plaintext at most: a longer one is the caller's mistake when sent, a protocol error when
    received (its frame still fits in the frame limit)."""
    keys = DirectionKeys(enc_key=bytes(16), mac_key=bytes(32))
    sender, receiver = (
        RecordLayer(
            RecordProtection.NULL, write_keys=keys, read_keys=keys, sequence_numbers=True, random=bytes
        )
        for _ in range(2)
    )
    with pytest.raises(LocalProtocolError, match="over 16384 bytes"):
        sender.seal(bytes(MAX_RECORD_PLAINTEXT + 1))
    _, body = sender.seal(bytes(MAX_RECORD_PLAINTEXT))
    assert receiver.open(body)[1] == bytes(MAX_RECORD_PLAINTEXT)
    oversized = bytes(MAX_RECORD_PLAINTEXT + 1)  # a NULL record's body is its plaintext
    with pytest.raises(RemoteProtocolError, match="over 16384") as caught:
        receiver.open(oversized)
    assert caught.value.step == "record" and len(oversized) <= MAX_BODY
