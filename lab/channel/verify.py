"""The client's identity checks, one protection each, in the order a browser reports them.

    validity   the clock is inside the certificate's validity period          (seed 001 §5.2.3 b)
    ca_trust   the chain verifies up to a CA the client trusts                 (seed 001 §4.2.5-4.2.8)
    hostname   the certificate names the host the client dialled               (seed 001 §4.2.6)
    pinning    the key is the one remembered for this host (known_hosts)       (seed 002 §三)

cryptography's verifier checks the chain, the name and the time in one call and reports any failure as
the same `VerificationError`. To name the protection that fired without reading its message, the checks
are separated: the chain is verified at a time inside the sent certificates' windows and for a name the
leaf carries, so that only the chain can fail there; the clock is checked apart (on the leaf, and on the
intermediates of the path found), and the dialled name by pyca's service_identity (RFC 6125 DNS-ID
matching). Turning a protection off skips exactly its check. Times are compared to the second, as RFC
5280 writes them: a certificate is valid through the whole second of its notAfter.

Path building is bounded by construction, so that no chain can stall the event loop that calls it:
cryptography tries every candidate issuer at every level, up to 8 deep, so x509-limbo's
`pathological-chain-same-subject-same-key` (N intermediates with one subject and one key) cost N^8
signature checks, minutes for N = 5. The channel caps the chain (`MAX_CHAIN_CERTIFICATES`), twins are
dropped here, and the search goes no deeper than the intermediates left: at most 3 + 3² + 3³ checks.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import service_identity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, ServerVerifier, Store, VerificationError
from service_identity.cryptography import verify_certificate_hostname

from lab.channel.connection import VerifiedIdentity, key_fingerprint
from lab.channel.errors import (
    CertificateNotValidNow,
    CertificateUntrusted,
    HostnameMismatch,
    NoNameToVerifyChainFor,
    RemoteProtocolError,
)
from lab.channel.pins import KnownHosts
from lab.channel.protections import Protections

STEP = "server_certificate"
MAX_DEPTH = 8
"""cryptography's own default: no path is searched deeper, however many intermediates are sent."""


class LabTrust:
    """An `IdentityVerifier` over the client's trusted CAs and its known_hosts file."""

    def __init__(self, trusted: Sequence[x509.Certificate], known_hosts: KnownHosts) -> None:
        self.trusted = list(trusted)
        self.known_hosts = known_hosts

    def verify(
        self,
        chain: Sequence[x509.Certificate],
        server_name: str,
        protections: Protections,
        now: datetime.datetime,
    ) -> VerifiedIdentity:
        leaf = chain[0]
        key = leaf.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise RemoteProtocolError("the server certificate's key is not RSA", step=STEP)
        checks: list[str] = []
        if protections.validity:
            check_validity(leaf, now)
            checks.append("validity")
        if protections.ca_trust:
            try:
                path = check_chain(leaf, chain[1:], self.trusted, now)
            except NoNameToVerifyChainFor:
                if protections.hostname:
                    check_hostname(leaf, server_name)  # the name decides: its check refuses
                raise
            if protections.validity:
                for intermediate in path[1:-1]:  # the trust anchor, last, is the client's own
                    check_validity(
                        intermediate, now, f"the intermediate {intermediate.subject.rfc4514_string()}"
                    )
            checks.append("ca_trust")
        if protections.hostname:
            check_hostname(leaf, server_name)
            checks.append("hostname")
        fingerprint = key_fingerprint(key)
        pin = None
        if protections.pinning:
            pin = self.known_hosts.check(server_name, fingerprint)
            checks.append("pinning")
        return VerifiedIdentity(key, leaf.subject.rfc4514_string(), fingerprint, tuple(checks), pin)


def to_the_second(moment: datetime.datetime) -> datetime.datetime:
    """RFC 5280 times have no fraction of a second: compare at that granularity."""
    return moment.replace(microsecond=0)


def check_validity(
    certificate: x509.Certificate, now: datetime.datetime, what: str = "the certificate"
) -> None:
    now = to_the_second(now)
    if now > certificate.not_valid_after_utc:
        raise CertificateNotValidNow(
            f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC", step=STEP
        )
    if now < certificate.not_valid_before_utc:
        raise CertificateNotValidNow(
            f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
            step=STEP,
        )


def dns_names(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def check_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> list[x509.Certificate]:
    """The path from the leaf to a trusted CA, the anchor last; raises `CertificateUntrusted`."""
    candidates = without_twins(intermediates)
    policy = (
        PolicyBuilder()
        .store(Store(list(trusted)))
        .time(chain_time(leaf, candidates, now))
        .max_chain_depth(min(len(candidates), MAX_DEPTH))  # a path uses each intermediate once at most
    )
    verifier = server_verifier(policy, leaf)
    if verifier is None:
        raise NoNameToVerifyChainFor("the certificate carries no DNS name to verify it for", step=STEP)
    try:
        return verifier.verify(leaf, candidates)
    except VerificationError as exc:
        raise CertificateUntrusted(
            f"the certificate of {leaf.subject.rfc4514_string()} does not chain to a trusted CA ({exc})",
            step=STEP,
        ) from None


def without_twins(intermediates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The intermediates, the first of each (subject, issuer, key) only. Twins are interchangeable to
    path building, which tries each at every level: N of them cost N to the power of the depth. A
    cross-signed CA (same subject and key, another issuer) is no twin and is kept."""
    firsts: dict[tuple[bytes, bytes, bytes], x509.Certificate] = {}
    for certificate in intermediates:
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        firsts.setdefault(
            (certificate.subject.public_bytes(), certificate.issuer.public_bytes(), spki), certificate
        )
    return list(firsts.values())


def chain_time(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], now: datetime.datetime
) -> datetime.datetime:
    """The moment nearest `now` inside the windows of the leaf and every intermediate (if they share
    one; else inside the leaf's): there the chain's dates cannot fail it, and `validity` judges them."""
    leaf_window = (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    start = max(c.not_valid_before_utc for c in (leaf, *intermediates))
    end = min(c.not_valid_after_utc for c in (leaf, *intermediates))
    if start > end:
        start, end = leaf_window
    return min(max(to_the_second(now), start), end)


def server_verifier(policy: PolicyBuilder, leaf: x509.Certificate) -> ServerVerifier | None:
    """A verifier for the first name the leaf carries that cryptography takes (a wildcard stands for any
    leftmost label), so that only the chain can fail; None when it takes none of them."""
    for name in dns_names(leaf):
        candidate = "wildcard" + name[1:] if name.startswith("*.") else name
        try:
            return policy.build_server_verifier(DNSName(candidate))
        except ValueError:
            continue
    return None


def check_hostname(leaf: x509.Certificate, server_name: str) -> None:
    """The leaf's subjectAltName DNS names must match `server_name` (RFC 6125, by service_identity).

    Case-insensitive; a wildcard stands for exactly one whole leftmost label, and not over a top-level
    domain; the common name is never used. A trailing dot (the absolute form of the same name) is ignored.
    """
    try:
        verify_certificate_hostname(leaf, server_name.removesuffix("."))
        return
    except service_identity.VerificationError:
        reason = ""  # a well-formed certificate for other names
    except service_identity.CertificateError as exc:
        reason = f" ({exc})"  # no subjectAltName, or a malformed pattern: refused as a whole
    except (ValueError, ImportError):
        # A dialled name it cannot take as a DNS-ID (an IP address, illegal characters; a non-ASCII name
        # without idna installed), or a single-label name against a wildcard (service_identity 24.2
        # fails to split it: pyca/service-identity#22).
        reason = ""
    raise HostnameMismatch(
        f"the certificate is for {', '.join(dns_names(leaf)) or 'no DNS name'}, not for {server_name}"
        f"{reason}",
        step=STEP,
    )
