"""Certificate chains made to hurt the client: bounded path building, and refusals that name the defect.

x509-limbo's `pathological-chain-same-subject-same-key`: an attacker with no CA key sends N intermediates
sharing one subject and one key, each able to sign the others and the leaf. cryptography's path builder
tries every one at every level, N^8 signature checks: before the cap and the bounds of lab/channel/verify.py
it took 2.7 s for N = 3 and 39 s for N = 4 inside `receive_data`, stalling the client's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from lab.channel.connection import (
    MAX_CHAIN_BYTES,
    MAX_CHAIN_CERTIFICATES,
    ClientConfig,
    ClientConnection,
    HandshakeComplete,
    ServerConfig,
    ServerConnection,
)
from lab.channel.errors import (
    CertificateNotValidNow,
    CertificateUntrusted,
    ChainTooLarge,
    ChannelError,
    HostnameMismatch,
    Refusal,
    RemoteProtocolError,
)
from lab.channel.pins import KnownHosts
from lab.channel.protections import RECOMMENDED, Protections
from lab.channel.verify import LabTrust, check_validity
from lab.roles.client import Command, run_session
from lab.roles.transport import ChannelStream
from lab.state import StateDir
from tests.loopback import running_server
from tests.pair import Pair

pytestmark = pytest.mark.loopback

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
YEARS = 3000 * DAY
LOOP = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loop")])
NO_PINS = KnownHosts(Path("/nonexistent/known_hosts"))
FAST = 1.0
"""Seconds within which any chain must be refused (the pathological ones took minutes)."""

IssuerKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
Chain = tuple[x509.Certificate, ...]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not ca,
        key_cert_sign=ca,
        crl_sign=False,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> x509.Certificate:
    """A CA certificate with no path length limit, so that intermediates may follow it."""
    return (
        _builder(subject, issuer, key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def server_certificate(
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    names: Sequence[str] = ("bank.lab",),
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> x509.Certificate:
    """An RSA leaf for `names`, as the channel's key exchange needs, carrying what the verifier demands."""
    return (
        _builder(_name(names[0]), issuer, SERVER_KEY.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


class Hierarchy:
    """A root the client trusts, valid for years as roots are, and a line of intermediates under it."""

    def __init__(self, intermediates: int) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = ca_certificate(
            _name("root"),
            self.root_key,
            _name("root"),
            self.root_key,
            not_before=NOW - YEARS,
            not_after=NOW + YEARS,
        )
        self.keys = [self.root_key]
        self.names = [_name("root")]
        self.intermediates: list[x509.Certificate] = []
        for i in range(intermediates):
            self.add_intermediate(_name(f"intermediate {i}"))

    def add_intermediate(self, subject: x509.Name, **dates: datetime.datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.intermediates.append(ca_certificate(subject, key, self.names[-1], self.keys[-1], **dates))
        self.keys.append(key)
        self.names.append(subject)

    def chain(self, **leaf: Any) -> Chain:
        """The leaf, then the intermediates from the leaf's issuer up."""
        return (server_certificate(self.names[-1], self.keys[-1], **leaf), *reversed(self.intermediates))

    def trust(self) -> LabTrust:
        return LabTrust([self.root], NO_PINS)


def pathological_chain(n: int) -> Chain:
    """A bank.lab leaf and `n` intermediates that share one subject and one key, made without any CA key."""
    key = ec.generate_private_key(ec.SECP256R1())
    twins = [ca_certificate(LOOP, key, LOOP, key) for _ in range(n)]
    return (server_certificate(LOOP, key), *twins)


def handshake_pair(chain: Chain, trust: LabTrust, protections: Protections = RECOMMENDED) -> Pair:
    """The client's real receive path: a server presenting `chain`, a client trusting `trust`."""
    return Pair(
        ClientConnection(ClientConfig(protections, "bank.lab", trust)),
        ServerConnection(ServerConfig(protections, chain, SERVER_KEY)),
    )


def timed_handshake(chain: Chain, trust: LabTrust, protections: Protections = RECOMMENDED) -> float:
    """Seconds the handshake took; raises what the client raised."""
    started = time.perf_counter()
    handshake_pair(chain, trust, protections).handshake()
    return time.perf_counter() - started


def refusal_within(chain: Chain, trust: LabTrust, protections: Protections = RECOMMENDED) -> ChannelError:
    started = time.perf_counter()
    with pytest.raises(ChannelError) as caught:
        handshake_pair(chain, trust, protections).handshake()
    assert time.perf_counter() - started < FAST
    return caught.value


# The pathological chain ---------------------------------------------------------------------------------


def test_the_pathological_chain_sends_the_path_builder_round_its_loop() -> None:
    """cryptography's own verifier, unbounded, goes round the twins to its depth limit: the fixture is the
    attack, not a chain refused early for a missing extension."""
    chain = pathological_chain(1)
    verifier = (
        PolicyBuilder()
        .store(Store([Hierarchy(0).root]))
        .time(NOW)
        .build_server_verifier(x509.DNSName("bank.lab"))
    )
    with pytest.raises(VerificationError, match="exceeds max depth"):
        verifier.verify(chain[0], list(chain[1:]))


@pytest.mark.parametrize("n", [5, 50])
def test_a_pathological_chain_over_the_cap_is_refused_by_ca_trust_within_a_second(n: int) -> None:
    chain = pathological_chain(n)
    refusal = refusal_within(chain, Hierarchy(0).trust())
    assert isinstance(refusal, ChainTooLarge)
    assert (refusal.protection, refusal.step) == ("ca_trust", "server_certificate")
    assert f"a chain of {n + 1} certificates" in refusal.message


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_pathological_chain_within_the_cap_is_refused_by_ca_trust_within_a_second(n: int) -> None:
    """Within the cap the chain is verified: twins are dropped and the search is as deep as what is left."""
    refusal = refusal_within(pathological_chain(n), Hierarchy(0).trust())
    assert type(refusal) is CertificateUntrusted
    assert (refusal.protection, refusal.step) == ("ca_trust", "server_certificate")


def test_twins_of_a_genuine_intermediate_still_verify() -> None:
    """The negative twin of dropping twins: a genuine intermediate sent with copies of itself re-issued
    (same subject, issuer and key, new serial numbers) is accepted, quickly."""
    hierarchy = Hierarchy(1)
    leaf, intermediate = hierarchy.chain()
    copies = [
        ca_certificate(hierarchy.names[1], hierarchy.keys[1], hierarchy.names[0], hierarchy.root_key)
        for _ in range(2)
    ]
    assert timed_handshake((leaf, intermediate, *copies), hierarchy.trust()) < FAST


def test_a_cross_signed_intermediate_is_no_twin() -> None:
    """Same subject and key under another issuer: both are kept, and the path through the trusted root is
    found even when the one under an untrusted root comes first."""
    hierarchy = Hierarchy(1)
    leaf, trusted_path = hierarchy.chain()
    stranger = ec.generate_private_key(ec.SECP256R1())
    cross_signed = ca_certificate(hierarchy.names[1], hierarchy.keys[1], _name("stranger"), stranger)
    handshake_pair((leaf, cross_signed, trusted_path), hierarchy.trust()).handshake()
    with pytest.raises(CertificateUntrusted):
        handshake_pair((leaf, cross_signed), hierarchy.trust()).handshake()


# The cap ------------------------------------------------------------------------------------------------


def test_a_genuine_chain_at_the_length_cap_verifies_and_one_more_is_refused() -> None:
    at_cap = Hierarchy(MAX_CHAIN_CERTIFICATES - 1)
    handshake_pair(at_cap.chain(), at_cap.trust()).handshake()
    over = Hierarchy(MAX_CHAIN_CERTIFICATES)
    refusal = refusal_within(over.chain(), over.trust())
    assert isinstance(refusal, ChainTooLarge) and refusal.protection == "ca_trust"


def padding_certificate(size: int) -> x509.Certificate:
    """A self-signed certificate on no path, exactly `size` bytes of DER (Ed25519 signatures: one size)."""
    key = ed25519.Ed25519PrivateKey.generate()
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    padding = size
    for _ in range(5):  # DER lengths grow by steps: converge on the exact size
        certificate = (
            _builder(_name("padding"), _name("padding"), key.public_key(), NOW - DAY, NOW + 30 * DAY)
            .add_extension(x509.UnrecognizedExtension(oid, b"\0" * padding), critical=False)
            .sign(key, None)
        )
        actual = len(certificate.public_bytes(Encoding.DER))
        if actual == size:
            return certificate
        padding -= actual - size
    raise AssertionError(f"no padding makes a certificate of {size} bytes")


def test_a_chain_of_exactly_the_byte_cap_verifies_and_one_byte_more_is_refused() -> None:
    hierarchy = Hierarchy(0)
    (leaf,) = hierarchy.chain()
    room = MAX_CHAIN_BYTES - len(leaf.public_bytes(Encoding.DER))
    handshake_pair((leaf, padding_certificate(room)), hierarchy.trust()).handshake()
    refusal = refusal_within((leaf, padding_certificate(room + 1)), hierarchy.trust())
    assert isinstance(refusal, ChainTooLarge)
    assert f"{MAX_CHAIN_BYTES + 1} bytes" in refusal.message


def test_without_ca_trust_a_chain_over_the_cap_is_a_protocol_error_and_one_within_is_accepted() -> None:
    """Nothing builds a path with ca_trust off; the cap is then the protocol's limit, named by no
    protection. Within it, the attacker's self-made leaf is accepted, as ca_trust off means."""
    off = RECOMMENDED.without("ca_trust")
    error = refusal_within(pathological_chain(MAX_CHAIN_CERTIFICATES), Hierarchy(0).trust(), off)
    assert isinstance(error, RemoteProtocolError) and not isinstance(error, Refusal)
    assert error.step == "server_certificate"
    done = handshake_pair(
        pathological_chain(MAX_CHAIN_CERTIFICATES - 1), Hierarchy(0).trust(), off
    ).handshake()
    assert done.identity is not None and done.identity.checks == ("validity", "hostname")


# Which protection names which defect --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dates", "why"),
    [
        ({"not_before": NOW - 400 * DAY, "not_after": NOW - 3 * DAY}, "expired on"),
        ({"not_before": NOW + 3 * DAY, "not_after": NOW + 400 * DAY}, "is not valid before"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_an_intermediate_outside_its_dates_is_refused_by_validity_not_ca_trust(
    dates: dict[str, datetime.datetime], why: str
) -> None:
    hierarchy = Hierarchy(0)
    hierarchy.add_intermediate(_name("intermediate"), **dates)
    chain = hierarchy.chain(not_before=NOW - 300 * DAY, not_after=NOW + 300 * DAY)  # the leaf is in date
    with pytest.raises(CertificateNotValidNow, match=f"the intermediate CN=intermediate {why}") as caught:
        handshake_pair(chain, hierarchy.trust()).handshake()
    assert (caught.value.protection, caught.value.step) == ("validity", "server_certificate")
    # Its negative twin: validity off, the same chain verifies (ca_trust judges the chain, not the clock).
    done = handshake_pair(chain, hierarchy.trust(), RECOMMENDED.without("validity")).handshake()
    assert done.identity is not None and done.identity.checks == ("ca_trust", "hostname")


def test_an_intermediate_in_date_passes_validity() -> None:
    hierarchy = Hierarchy(1)
    done = handshake_pair(hierarchy.chain(), hierarchy.trust()).handshake()
    assert done.identity is not None and done.identity.checks == ("validity", "ca_trust", "hostname")


def test_a_wrong_name_on_a_valid_chain_is_refused_by_hostname() -> None:
    hierarchy = Hierarchy(2)
    with pytest.raises(HostnameMismatch, match=r"is for attacker\.lab, not for bank\.lab") as caught:
        handshake_pair(hierarchy.chain(names=("attacker.lab",)), hierarchy.trust()).handshake()
    assert (caught.value.protection, caught.value.step) == ("hostname", "server_certificate")
    handshake_pair(hierarchy.chain(names=("bank.lab",)), hierarchy.trust()).handshake()


# One-second granularity ---------------------------------------------------------------------------------


def test_a_certificate_valid_from_now_with_microseconds_is_accepted() -> None:
    """Issued with notBefore = now (the DER keeps whole seconds) and checked at that same `now`."""
    now = NOW + datetime.timedelta(microseconds=654_321)
    hierarchy = Hierarchy(1)
    chain = hierarchy.chain(not_before=now)
    LabTrust([hierarchy.root], NO_PINS).verify(chain, "bank.lab", RECOMMENDED, now)
    with pytest.raises(CertificateNotValidNow, match="is not valid before"):
        LabTrust([hierarchy.root], NO_PINS).verify(
            chain, "bank.lab", RECOMMENDED, now - datetime.timedelta(seconds=1)
        )


@pytest.mark.parametrize(
    ("offset", "valid"),
    [
        (datetime.timedelta(microseconds=-1), False),
        (datetime.timedelta(0), True),
        (datetime.timedelta(days=1, microseconds=999_999), True),
        (datetime.timedelta(days=1, seconds=1), False),
    ],
    ids=["a-microsecond-before-notBefore", "at-notBefore", "inside-the-second-of-notAfter", "a-second-after"],
)
def test_validity_is_compared_to_the_second(offset: datetime.timedelta, valid: bool) -> None:
    """RFC 5280: notBefore through notAfter inclusive, in whole seconds."""
    hierarchy = Hierarchy(1)
    chain = hierarchy.chain(not_before=NOW, not_after=NOW + DAY)
    trust = LabTrust([hierarchy.root], NO_PINS)
    if valid:
        check_validity(chain[0], NOW + offset)
        trust.verify(chain, "bank.lab", RECOMMENDED, NOW + offset)
    else:
        with pytest.raises(CertificateNotValidNow):
            trust.verify(chain, "bank.lab", RECOMMENDED, NOW + offset)


# Over loopback: the event loop keeps serving --------------------------------------------------------------


@contextlib.asynccontextmanager
async def chain_server(chain: Chain) -> AsyncIterator[int]:
    """A lab-channel server on loopback that presents `chain` and does nothing after the handshake."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = ChannelStream(ServerConnection(ServerConfig(RECOMMENDED, chain, SERVER_KEY)), reader, writer)
        with contextlib.suppress(ChannelError):
            await stream.handshake(5.0)
        await stream.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def client_handshake(port: int, trust: LabTrust) -> HandshakeComplete:
    """The client role's path: a socket, the transport, the sans-IO client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = ChannelStream(ClientConnection(ClientConfig(RECOMMENDED, "bank.lab", trust)), reader, writer)
    try:
        return await stream.handshake(10.0)
    finally:
        await stream.close()


async def longest_stall(work: Awaitable[Any]) -> tuple[float, Any]:
    """Runs `work` while a task ticks every 5 ms: the longest the loop kept the ticker waiting, in
    seconds (up to the end of `work`), and what `work` returned."""
    last = time.perf_counter()
    longest = 0.0

    async def tick() -> None:
        nonlocal last, longest
        while True:
            await asyncio.sleep(0.005)
            longest = max(longest, time.perf_counter() - last)
            last = time.perf_counter()

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        ticker.cancel()
    return max(longest, time.perf_counter() - last), result


STALL = 0.5
"""Longest the loop may be kept busy (the pathological chain held it 2.7 s with three intermediates)."""


async def refused_by_ca_trust(port: int, trust: LabTrust) -> float:
    """Seconds until the client refused the server's chain, naming ca_trust."""
    started = time.perf_counter()
    with pytest.raises(CertificateUntrusted) as caught:
        await client_handshake(port, trust)
    assert caught.value.protection == "ca_trust"
    return time.perf_counter() - started


@pytest.mark.parametrize("n", [3, 5, 50])
def test_while_one_client_is_refused_a_pathological_chain_the_loop_serves_another_session(
    state: StateDir, n: int
) -> None:
    async def scenario() -> tuple[float, Any]:
        async with running_server(state) as bank, chain_server(pathological_chain(n)) as hostile:
            return await longest_stall(
                asyncio.gather(
                    refused_by_ca_trust(hostile, state.trust()),
                    run_session(state, "127.0.0.1", bank, RECOMMENDED, [Command("balance")]),
                )
            )

    stall, (refusal_took, session) = asyncio.run(scenario())
    assert refusal_took < FAST
    assert [reply["ok"] for reply in session.replies] == [True, True]  # logged in, read the balance
    assert stall < STALL


def test_the_stall_probe_sees_a_loop_kept_busy() -> None:
    """The negative twin of the loop test: work that holds the loop shows up as a stall."""

    async def busy() -> None:
        await asyncio.sleep(0.02)
        time.sleep(STALL + 0.1)  # what a synchronous path search did inside receive_data

    stall, _ = asyncio.run(longest_stall(busy()))
    assert stall > STALL


def test_a_genuine_chain_completes_over_the_same_loopback_path() -> None:
    """The negative twin of the refusal over loopback: the harness completes a handshake it should."""
    hierarchy = Hierarchy(2)

    async def scenario() -> HandshakeComplete:
        async with chain_server(hierarchy.chain()) as port:
            return await client_handshake(port, hierarchy.trust())

    done = asyncio.run(scenario())
    assert done.identity is not None and done.identity.checks == ("validity", "ca_trust", "hostname")
