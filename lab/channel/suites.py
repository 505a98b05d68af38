"""Cipher suites: a key exchange and a record protection, and which ones an endpoint offers.

As a TLS 1.2 client of the real world does, an endpoint offers its strong suites first and still offers
the legacy ones (RSA key transport; AES-CTR without a MAC) for compatibility. A protection switched off
removes the strong form from the offer. `downgrade` strips the strong offers on the wire; `transcript`
notices, because the Finished MACs cover the ClientHello as the client sent it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lab.channel.protections import Protections


class KeyExchange(enum.IntEnum):
    """Ordered weakest first."""

    RSA = 1
    """The client encrypts a pre-master secret under the certified RSA key (RSA-OAEP, SHA-256)."""
    ECDHE = 2
    """Ephemeral X25519 on both sides; the server signs its share with the certified key."""


class RecordProtection(enum.IntEnum):
    """Ordered weakest first."""

    NULL = 1
    """Plaintext, no MAC."""
    NULL_HMAC_SHA256 = 2
    """Plaintext with an HMAC-SHA256 tag."""
    AES128_CTR = 3
    """Encrypted, unauthenticated: malleable. The legacy form when `mac` is off."""
    AES128_CTR_HMAC_SHA256 = 4
    """Encrypt-then-MAC."""
    AES128_GCM = 5
    """AEAD."""

    @property
    def encrypts(self) -> bool:
        return self >= RecordProtection.AES128_CTR

    @property
    def authenticates(self) -> bool:
        return self in (
            RecordProtection.NULL_HMAC_SHA256,
            RecordProtection.AES128_CTR_HMAC_SHA256,
            RecordProtection.AES128_GCM,
        )


class RecordFeatures(enum.IntFlag):
    """Record-layer settings both ends must share, announced in the ClientHello (as TLS announces
    encrypt_then_mac or extended_master_secret). A server with other settings refuses the handshake."""

    SEQUENCE_NUMBERS = 1
    PER_DIRECTION_KEYS = 2
    ALL = 3

    @classmethod
    def of(cls, protections: Protections) -> RecordFeatures:
        features = cls(0)
        if protections.sequence_numbers:
            features |= cls.SEQUENCE_NUMBERS
        if protections.per_direction_keys:
            features |= cls.PER_DIRECTION_KEYS
        return features

    def describe(self) -> str:
        return ", ".join(
            f"{name}={'on' if flag in self else 'off'}"
            for name, flag in (
                ("sequence_numbers", self.SEQUENCE_NUMBERS),
                ("per_direction_keys", self.PER_DIRECTION_KEYS),
            )
        )


@dataclass(frozen=True, order=True)
class Suite:
    """A negotiable suite. Ordering is strength: record protection first, then the key exchange."""

    record: RecordProtection
    key_exchange: KeyExchange

    @property
    def code(self) -> int:
        """The two bytes on the wire: key exchange in the high byte, record protection in the low."""
        return self.key_exchange << 8 | self.record

    @property
    def name(self) -> str:
        return f"{self.key_exchange.name}_{self.record.name}"

    @classmethod
    def from_code(cls, code: int) -> Suite | None:
        """The suite with this wire code, or None for a code the lab does not know (it is ignored)."""
        try:
            return cls(RecordProtection(code & 0xFF), KeyExchange(code >> 8))
        except ValueError:
            return None

    @classmethod
    def from_name(cls, name: str) -> Suite:
        for suite in ALL_SUITES:
            if suite.name == name:
                return suite
        raise ValueError(f"unknown suite {name!r}")

    def __str__(self) -> str:
        return self.name


ALL_SUITES = tuple(sorted(Suite(r, k) for r in RecordProtection for k in KeyExchange))


def offered_suites(protections: Protections) -> tuple[Suite, ...]:
    """What an endpoint offers (client) or accepts (server), strongest first."""
    if protections.encryption:
        records = [RecordProtection.AES128_CTR]
        if protections.mac:
            records += [RecordProtection.AES128_GCM, RecordProtection.AES128_CTR_HMAC_SHA256]
    else:
        records = [RecordProtection.NULL]
        if protections.mac:
            records += [RecordProtection.NULL_HMAC_SHA256]
    exchanges = [KeyExchange.RSA] + ([KeyExchange.ECDHE] if protections.forward_secrecy else [])
    return tuple(sorted((Suite(r, k) for r in records for k in exchanges), reverse=True))


def choose_suite(offered: tuple[Suite, ...], supported: tuple[Suite, ...]) -> Suite | None:
    """The server's choice: its strongest supported suite that the client offered."""
    common = set(offered) & set(supported)
    return max(common) if common else None
