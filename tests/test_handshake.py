"""The handshake completes for every suite, negotiates the strongest common one, and carries data."""

from __future__ import annotations

import datetime
import itertools
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.channel.connection import ApplicationData, ServerConfig, ServerConnection
from lab.channel.errors import LocalProtocolError, PeerRefused, RecordTampered, RemoteProtocolError
from lab.channel.frames import Frame, FrameType
from lab.channel.messages import Alert
from lab.channel.protections import NONE, RECOMMENDED, Protections
from lab.channel.suites import KeyExchange, RecordProtection, Suite, offered_suites
from lab.pki.authority import CertificateAuthority
from lab.state import StateDir
from tests.pair import make_pair

SUITE_SWITCHES = list(itertools.product([True, False], repeat=3))


@pytest.mark.parametrize(("encryption", "mac", "forward_secrecy"), SUITE_SWITCHES)
def test_session_in_both_directions_for_every_suite_family(
    state: StateDir, encryption: bool, mac: bool, forward_secrecy: bool
) -> None:
    protections = RECOMMENDED.with_switches(
        {"encryption": encryption, "mac": mac, "forward_secrecy": forward_secrecy}
    )
    pair = make_pair(state, protections)
    done = pair.handshake()

    assert done.suite == offered_suites(protections)[0]
    assert done.suite.record.encrypts is encryption
    assert done.suite.record.authenticates is mac
    assert (done.suite.key_exchange is KeyExchange.ECDHE) is forward_secrecy
    for i in range(3):
        assert pair.client_sends(b"ping %d" % i) == [b"ping %d" % i]
        assert pair.server_sends(b"pong %d" % i) == [b"pong %d" % i]


def test_recommended_negotiates_ecdhe_with_aes_gcm(state: StateDir) -> None:
    done = make_pair(state, RECOMMENDED).handshake()
    assert done.suite == Suite(RecordProtection.AES128_GCM, KeyExchange.ECDHE)
    assert done.identity is not None
    assert done.identity.checks == ("validity", "ca_trust", "hostname")


def test_none_negotiates_plaintext_rsa_and_the_wire_shows_the_data(state: StateDir) -> None:
    pair = make_pair(state, NONE)
    assert pair.handshake().suite == Suite(RecordProtection.NULL, KeyExchange.RSA)
    pair.client_sends(b"password=hunter2")
    assert any(b"password=hunter2" in frame for _, frame in pair.wire)


def test_encrypted_records_hide_the_data_on_the_wire(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED)
    pair.handshake()
    pair.client_sends(b"password=hunter2")
    assert not any(b"hunter2" in frame for _, frame in pair.wire)


def test_a_client_with_legacy_support_meets_a_legacy_server(state: StateDir) -> None:
    """A strong client still accepts the legacy suite a weaker server picks, as TLS 1.2 clients do."""
    server = RECOMMENDED.without("mac", "forward_secrecy")
    done = make_pair(state, RECOMMENDED, server).handshake()
    assert done.suite == Suite(RecordProtection.AES128_CTR, KeyExchange.RSA)


def test_no_common_suite_is_a_protocol_error(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED, RECOMMENDED.without("encryption"))
    with pytest.raises(RemoteProtocolError, match="no suite in common") as caught:
        pair.handshake()
    assert caught.value.step == "client_hello"


def test_application_data_before_the_handshake_is_an_api_misuse(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED)
    with pytest.raises(LocalProtocolError):
        pair.client.send_application_data(b"too early")


def test_records_count_up_per_direction(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED)
    pair.handshake()
    for _ in range(3):
        pair.client_sends(b"x")
    pair.server_sends(b"y")
    seqs = [e.seq for e in pair.server_events if isinstance(e, ApplicationData)]
    assert seqs == [0, 1, 2]
    assert [e.seq for e in pair.client_events if isinstance(e, ApplicationData)] == [0]


@pytest.mark.parametrize("switch", ["per_direction_keys", "sequence_numbers"])
def test_different_record_layer_settings_are_refused_at_the_hello(state: StateDir, switch: str) -> None:
    """The record-layer switches are shared settings, announced in the ClientHello."""
    pair = make_pair(state, RECOMMENDED, RECOMMENDED.without(switch))
    with pytest.raises(RemoteProtocolError, match=f"{switch}=off") as caught:
        pair.handshake()
    assert caught.value.step == "client_hello"


def test_protections_value_api() -> None:
    assert Protections() == RECOMMENDED
    assert not RECOMMENDED.pinning
    assert RECOMMENDED.without("mac").enabled() == RECOMMENDED.enabled() - {"mac"}
    assert Protections.only(["mac"]).enabled() == {"mac"}
    assert RECOMMENDED.without("hostname").describe() == "recommended -hostname"
    assert NONE.plus("mac").describe() == "none +mac"
    with pytest.raises(ValueError, match="unknown protection 'macc'"):
        RECOMMENDED.without("macc")


def test_a_key_too_small_for_rsa_oaep_is_a_protocol_error(state: StateDir) -> None:
    ca = CertificateAuthority.create("tiny CA", now=datetime.datetime.now(datetime.UTC))
    # cryptography will not make a key this small; openssl will (made now, never committed).
    pem = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:768"],
        capture_output=True,
        check=True,
    ).stdout
    weak_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(weak_key, rsa.RSAPrivateKey)
    leaf = ca.issue("bank.lab", now=datetime.datetime.now(datetime.UTC), key=weak_key)
    protections = RECOMMENDED.without("ca_trust", "forward_secrecy")
    pair = make_pair(state, protections)
    pair.server = ServerConnection(ServerConfig(protections, leaf.chain, leaf.private_key))
    with pytest.raises(RemoteProtocolError, match="768-bit RSA key is too small") as caught:
        pair.handshake()
    assert caught.value.step == "server_certificate"


def test_good_records_before_a_bad_one_are_delivered_before_the_error(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED)
    pair.handshake()
    good = pair.client.send_application_data(b"first").frame
    bad = bytearray(pair.client.send_application_data(b"second").frame)
    bad[-1] ^= 1
    events = pair.server.receive_data(good + bytes(bad))
    assert [e.data for e in events if isinstance(e, ApplicationData)] == [b"first"]
    assert pair.server.data_to_send()[0] == FrameType.ALERT  # the peer is told at once
    with pytest.raises(RecordTampered):
        pair.server.receive_data(b"")
    with pytest.raises(RecordTampered):  # and answering is not possible any more
        pair.server.send_application_data(b"reply")


def test_a_refusal_arriving_with_a_reply_surfaces_when_the_client_next_sends(state: StateDir) -> None:
    pair = make_pair(state, RECOMMENDED)
    pair.handshake()
    reply = pair.server.send_application_data(b"reply").frame
    alert = Frame(FrameType.ALERT, Alert("sequence_numbers", "record", "a replay").encode()).encode()
    events = pair.client.receive_data(reply + alert)
    assert [e.data for e in events if isinstance(e, ApplicationData)] == [b"reply"]
    with pytest.raises(PeerRefused) as caught:
        pair.client.send_application_data(b"next request")
    assert caught.value.protection == "sequence_numbers"
