"""The client's identity checks, one protection each, in the order a browser reports them.

    validity   the clock is inside the certificate's validity period          (seed 001 §5.2.3 b)
    ca_trust   the chain verifies up to a CA the client trusts                 (seed 001 §4.2.5-4.2.8)
    hostname   the certificate names the host the client dialled               (seed 001 §4.2.6)
    pinning    the key is the one remembered for this host (known_hosts)       (seed 002 §三)

cryptography's verifier checks the chain, the name and the time in one call and reports any failure as
the same `VerificationError`. To name the protection that fired without reading its message, the checks
are separated: the chain is verified at a time inside the leaf's own window and for a name the leaf
carries, so that only the chain can fail there; the clock is checked apart, and the dialled name by
pyca's service_identity (RFC 6125 DNS-ID matching). Turning a protection off skips exactly its check.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import service_identity
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from service_identity.cryptography import verify_certificate_hostname

from lab.channel.connection import VerifiedIdentity, key_fingerprint
from lab.channel.errors import (
    CertificateNotValidNow,
    CertificateUntrusted,
    HostnameMismatch,
    RemoteProtocolError,
)
from lab.channel.protections import Protections
from lab.pki.pins import KnownHosts

STEP = "server_certificate"


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
            check_chain(leaf, chain[1:], self.trusted, now)
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


def check_validity(leaf: x509.Certificate, now: datetime.datetime) -> None:
    if now > leaf.not_valid_after_utc:
        raise CertificateNotValidNow(
            f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", step=STEP
        )
    if now < leaf.not_valid_before_utc:
        raise CertificateNotValidNow(
            f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", step=STEP
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
) -> None:
    inside_window = min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
    policy = PolicyBuilder().store(Store(list(trusted))).time(inside_window)
    verifier = None
    for name in dns_names(leaf):
        # Verify for a concrete name the certificate covers (a wildcard stands for any leftmost label):
        # only the chain can fail here. cryptography refuses names it cannot parse; try the next.
        candidate = "wildcard" + name[1:] if name.startswith("*.") else name
        try:
            verifier = policy.build_server_verifier(DNSName(candidate))
            break
        except ValueError:
            continue
    if verifier is None:
        raise CertificateUntrusted("the certificate carries no DNS name to verify it for", step=STEP)
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise CertificateUntrusted(
            f"the certificate of {leaf.subject.rfc4514_string()} does not chain to a trusted CA ({exc})",
            step=STEP,
        ) from None


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
