"""Reading a certificate a peer sent, all of it at once: cryptography parses fields lazily, so a
malformed extension would otherwise fail later, inside whichever check reads it first."""

from __future__ import annotations

from cryptography import x509


class MalformedCertificate(ValueError):
    """Bytes that do not parse as a whole certificate."""


def malformation(certificate: x509.Certificate) -> str | None:
    """Why a field the checks read does not parse, or None when every one does."""
    try:
        _ = (certificate.public_key(), certificate.extensions)
        _ = (certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string())
        _ = (certificate.not_valid_before_utc, certificate.not_valid_after_utc)
    except Exception as exc:  # the certificate is somebody else's: any parse failure is its defect
        return f"{type(exc).__name__}: {exc}"
    return None


def parse_certificate(der: bytes) -> x509.Certificate:
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise MalformedCertificate(f"malformed certificate: ValueError: {exc}") from None
    why = malformation(certificate)
    if why is not None:
        raise MalformedCertificate(f"malformed certificate: {why}")
    return certificate
