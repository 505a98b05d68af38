"""The lab PKI and the identity checks, one protection at a time, through cryptography's verifier."""

from __future__ import annotations

import datetime
import ipaddress
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from lab.channel.errors import (
    CertificateNotValidNow,
    CertificateUntrusted,
    HostnameMismatch,
    NoNameToVerifyChainFor,
    PinnedKeyChanged,
)
from lab.channel.pins import KnownHosts
from lab.channel.protections import NONE, RECOMMENDED, Protections
from lab.channel.verify import LabTrust, check_chain, check_hostname, check_validity
from lab.pki.authority import CertificateAuthority, Leaf, new_rsa_key
from lab.state import ATTACKER_CERTIFICATES, StateDir, load_certificates

NOW = datetime.datetime.now(datetime.UTC)


def test_state_holds_every_certificate_an_attacker_needs(state: StateDir) -> None:
    for name in ATTACKER_CERTIFICATES:
        assert state.attacker_cert(name).exists() and state.attacker_key(name).exists()
    assert oct(state.server_key.stat().st_mode & 0o777) == "0o600"


def test_the_real_certificate_passes_every_check(state: StateDir) -> None:
    identity = state.trust().verify(state.server_leaf().chain, "bank.lab", RECOMMENDED.plus("pinning"), NOW)
    assert identity.checks == ("validity", "ca_trust", "hostname", "pinning")
    assert identity.pin == "recorded"


def test_each_check_fails_for_its_own_reason(state: StateDir) -> None:
    trusted = load_certificates(state.ca_cert)
    expired = state.attacker_leaf("expired").certificate
    with pytest.raises(CertificateNotValidNow, match="expired on"):
        check_validity(expired, NOW)
    check_chain(expired, [], trusted, NOW)  # an expired certificate still chains: only validity fails
    check_hostname(expired, "bank.lab")

    attacker = state.attacker_leaf("attacker.lab").certificate
    check_chain(attacker, [], trusted, NOW)
    with pytest.raises(HostnameMismatch, match=r"attacker\.lab, not for bank\.lab"):
        check_hostname(attacker, "bank.lab")

    for untrusted in ("self-signed", "rogue-bank.lab"):
        leaf = state.attacker_leaf(untrusted).certificate
        check_hostname(leaf, "bank.lab")
        with pytest.raises(CertificateUntrusted):
            check_chain(leaf, [], trusted, NOW)


def test_the_rogue_ca_is_trusted_by_a_client_that_installed_it(state: StateDir) -> None:
    rogue_leaf = state.attacker_leaf("rogue-bank.lab").certificate
    check_chain(rogue_leaf, [], load_certificates(state.attacker_cert("rogue-ca")), NOW)


def test_not_yet_valid_is_a_validity_failure(state: StateDir) -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    future = ca.issue("bank.lab", now=NOW, not_before=NOW + datetime.timedelta(days=1))
    with pytest.raises(CertificateNotValidNow, match="not valid before"):
        check_validity(future.certificate, NOW)


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("bank.lab", "bank.lab", True),  # exact
        ("bank.lab", "BANK.lab", True),  # case-insensitive, either way round
        ("BANK.Lab", "bank.LAB", True),
        ("bank.lab", "bank.lab.", True),  # the absolute form of the same name
        ("bank.lab", "evil-bank.lab", False),
        ("bank.lab", "bank.lab.evil", False),
        ("bank.lab", "www.bank.lab", False),
        ("*.lab.test", "bank.lab.test", True),  # a wildcard is one whole leftmost label
        ("*.lab.test", "BANK.Lab.Test", True),
        ("*.lab.test", "a.b.lab.test", False),  # not two labels
        ("*.lab.test", "lab.test", False),  # nor none: not the bare domain
        ("*.lab.test", "bank.other.test", False),
        ("*.lab.test", "bank", False),  # a single label (service_identity 24.2 raises ValueError)
        ("*.lab", "bank.lab", False),  # not over a top-level domain
        ("bank.*.test", "bank.lab.test", False),  # only in the leftmost label
        ("bank.lab", "127.0.0.1", False),  # an IP address is no DNS-ID
        ("bank.lab", "bank lab", False),  # nor is a name with a space
    ],
)
def test_hostname_matching_follows_rfc6125(pattern: str, name: str, matches: bool) -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = ca.issue(pattern, now=NOW).certificate
    if matches:
        check_hostname(leaf, name)
    else:
        with pytest.raises(HostnameMismatch, match=f"is for {re.escape(pattern)}, not for {re.escape(name)}"):
            check_hostname(leaf, name)


def test_a_name_the_certificate_does_not_carry_is_refused_naming_both() -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = ca.issue("bank.lab", "www.bank.lab", now=NOW).certificate
    check_hostname(leaf, "www.bank.lab")  # any of its names will do
    with pytest.raises(HostnameMismatch) as caught:
        check_hostname(leaf, "attacker.lab")
    assert caught.value.message == "the certificate is for bank.lab, www.bank.lab, not for attacker.lab"
    assert caught.value.step == "server_certificate"


def test_one_malformed_name_makes_the_whole_certificate_unmatchable() -> None:
    """service_identity refuses a certificate with a malformed pattern outright, even if another fits."""
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = ca.issue("*.lab", "bank.lab", now=NOW).certificate
    with pytest.raises(HostnameMismatch, match=r"is for \*\.lab, bank\.lab, not for bank\.lab \(.*wildcard"):
        check_hostname(leaf, "bank.lab")


def leaf_without_dns_name(ca: CertificateAuthority, san: x509.SubjectAlternativeName | None) -> Leaf:
    """A leaf `ca` signs whose common name is bank.lab but whose subjectAltName (if any) has no DNS name."""
    key = new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.lab")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    certificate = builder.sign(ca.private_key, hashes.SHA256())
    return Leaf(certificate, key, (certificate,))


@pytest.mark.parametrize(
    "san",
    [
        None,
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier("https://bank.lab/")]),
    ],
    ids=["no-san", "ip-only", "uri-only"],
)
def test_a_certificate_with_no_dns_name_is_refused_even_if_its_common_name_fits(
    san: x509.SubjectAlternativeName | None,
) -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = leaf_without_dns_name(ca, san)
    with pytest.raises(HostnameMismatch, match=r"is for no DNS name, not for bank\.lab"):
        check_hostname(leaf.certificate, "bank.lab")
    # Through the verifier with only the hostname check on, the refusal names that protection.
    trust = LabTrust([ca.certificate], KnownHosts(Path("/nonexistent/known_hosts")))
    with pytest.raises(HostnameMismatch) as caught:
        trust.verify(leaf.chain, "bank.lab", Protections.only(["hostname"]), NOW)
    assert caught.value.protection == "hostname"


def test_where_no_name_lets_the_chain_be_verified_the_name_decides() -> None:
    """A CA-signed leaf with no DNS name: its chain cannot be verified for any name, so with hostname on
    the refusal names hostname; with hostname off, ca_trust refuses (it cannot judge the chain)."""
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = leaf_without_dns_name(ca, None)
    trust = LabTrust([ca.certificate], KnownHosts(Path("/nonexistent/known_hosts")))
    with pytest.raises(HostnameMismatch):
        trust.verify(leaf.chain, "bank.lab", RECOMMENDED, NOW)
    with pytest.raises(NoNameToVerifyChainFor) as caught:
        trust.verify(leaf.chain, "bank.lab", RECOMMENDED.without("hostname"), NOW)
    assert caught.value.protection == "ca_trust"


def test_known_hosts_is_trust_on_first_use(state: StateDir) -> None:
    pins = KnownHosts(state.known_hosts)
    assert pins.check("bank.lab", "SHA256:aa") == "recorded"
    assert pins.check("BANK.lab", "SHA256:aa") == "matched"
    with pytest.raises(PinnedKeyChanged, match="remove its line"):
        pins.check("bank.lab", "SHA256:bb")
    assert state.known_hosts.read_text() == "bank.lab SHA256:aa\n"


def test_no_checks_at_all_under_none(state: StateDir) -> None:
    identity = state.trust().verify(state.attacker_leaf("expired").chain, "bank.lab", NONE, NOW)
    assert identity.checks == () and identity.pin is None


def test_no_key_or_certificate_is_committed() -> None:
    repo = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "pyproject.toml" in tracked  # the repository's own files, wherever pytest runs from
    assert not [f for f in tracked if f.endswith((".pem", ".key", ".crt", ".der", ".p12"))]


@pytest.mark.parametrize(
    "names", [("*.lab.test", "bank.lab.test"), ("*.lab.test",), ("bank_lab", "bank.lab.test")]
)
def test_wildcards_and_odd_names_are_checked_not_crashed_on(names: tuple[str, ...]) -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = ca.issue(*names, now=NOW)
    identity = LabTrust([ca.certificate], KnownHosts(Path("/nonexistent/known_hosts"))).verify(
        leaf.chain, "bank.lab.test", RECOMMENDED, NOW
    )
    assert identity.checks == ("validity", "ca_trust", "hostname")


def test_a_certificate_with_no_usable_name_is_untrusted_not_a_crash() -> None:
    ca = CertificateAuthority.create("test CA", now=NOW)
    leaf = ca.issue("bank_lab", now=NOW)
    with pytest.raises(CertificateUntrusted, match="no DNS name"):
        check_chain(leaf.certificate, [], [ca.certificate], NOW)
