"""A tiny certificate API in the manner of trustme: make a CA, issue certificates, write PEM files.

    ca = CertificateAuthority.create("mitm-lab CA", now=now)
    bank = ca.issue("bank.lab", now=now)
    stale = ca.issue("bank.lab", not_before=..., not_after=...)     # an expired certificate
    forged = self_signed("bank.lab", now=now)
    crl = ca.revocation_list([leaked.certificate], now=now)     # a CRL that lists it as revoked

Leaf keys are RSA because the lab channel's legacy key exchange is RSA key transport; CA keys are
ECDSA P-256 because they only sign, and are quick to make.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSA_BITS = 2048
LEAF_LIFETIME = datetime.timedelta(days=397)  # the longest public CAs issue today
CA_LIFETIME = datetime.timedelta(days=3650)
CRL_LIFETIME = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(hours=1)  # tolerate a little clock skew between lab roles


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mitm-lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Leaf:
    """A server certificate, its private key, and the chain to present (the certificate first)."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...]

    def write(self, cert_path: Path, key_path: Path) -> None:
        """The chain as PEM, and the key as unencrypted PKCS#8 readable only by its owner."""
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain))
        key_path.touch(mode=0o600)
        key_path.write_bytes(_pem_key(self.private_key))


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls, common_name: str, *, now: datetime.datetime, not_before: datetime.datetime | None = None
    ) -> CertificateAuthority:
        """A root CA valid from `not_before` (default: now) for CA_LIFETIME."""
        key = ec.generate_private_key(ec.SECP256R1())
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - BACKDATE)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    def issue(
        self,
        *names: str,
        now: datetime.datetime,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> Leaf:
        """A server certificate for `names` (DNS names). Validity defaults to `now` for LEAF_LIFETIME."""
        if not names:
            raise ValueError("issue() needs at least one DNS name")
        key = key or new_rsa_key()
        certificate = _leaf_certificate(
            names,
            key,
            issuer=self.certificate.subject,
            issuer_key=self.private_key,
            not_before=not_before or now - BACKDATE,
            not_after=not_after or now + LEAF_LIFETIME,
            authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.private_key.public_key()
            ),
        )
        return Leaf(certificate, key, (certificate,))

    def revocation_list(
        self, revoked: list[x509.Certificate], *, now: datetime.datetime
    ) -> x509.CertificateRevocationList:
        """A CRL, valid for CRL_LIFETIME from `now`, that lists `revoked` as revoked since `now`, their
        key having leaked."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - BACKDATE)
            .next_update(now + CRL_LIFETIME)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
        for certificate in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(certificate.serial_number)
                .revocation_date(now - BACKDATE)
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
        return builder.sign(self.private_key, hashes.SHA256())

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        if key_path is not None:
            key_path.touch(mode=0o600)
            key_path.write_bytes(_pem_key(self.private_key))


def self_signed(*names: str, now: datetime.datetime) -> Leaf:
    """A server certificate that vouches for itself: no CA signed it."""
    key = new_rsa_key()
    certificate = _leaf_certificate(
        names,
        key,
        issuer=_name(names[0]),
        issuer_key=key,
        not_before=now - BACKDATE,
        not_after=now + LEAF_LIFETIME,
        authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
    )
    return Leaf(certificate, key, (certificate,))


def _leaf_certificate(
    names: tuple[str, ...],
    key: rsa.RSAPrivateKey,
    *,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    authority_key_id: x509.AuthorityKeyIdentifier,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,  # RSA key transport encrypts the pre-master under this key
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority_key_id, critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
