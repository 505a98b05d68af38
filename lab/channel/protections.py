"""The protections of the lab channel: one frozen value, one switch per protection id.

Real TLS cannot switch its protections off one at a time; the lab channel can, so that running an attack
with and without a protection shows what that protection is for. The ids are the vocabulary of the
brief, the CLI, the reports and the tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final

from lab.protection import BOTH_AGREE, CLIENT_CHECK, EACH_SIDE, Protection

PROTECTIONS: Final = (
    Protection(
        "encryption",
        "enc",
        EACH_SIDE,
        "records encrypted; a plaintext suite is refused",
        "Application records are encrypted. Off: the endpoint offers only plaintext suites, "
        "and anyone on the path reads them (seed 001 §4.1).",
        "001 §4.1 使用对称加解密; 003 机密性",
    ),
    Protection(
        "ca_trust",
        "ca",
        CLIENT_CHECK,
        "the chain must verify to the lab CA",
        "The server certificate must chain to a CA the client trusts. Off: any certificate's key "
        "is used, the attacker's own included (seed 000, seed 001 §4.2.5-4.2.8).",
        "000; 001 §4.2.5-4.2.8",
    ),
    Protection(
        "hostname",
        "host",
        CLIENT_CHECK,
        "the certificate must name bank.lab",
        "The certificate must name the host the client dialled. Off: a CA-signed certificate "
        "for any name passes (seed 001 §4.2.6, seed 003 验证host).",
        "001 §4.2.6; 003 验证host",
    ),
    Protection(
        "validity",
        "valid",
        CLIENT_CHECK,
        "the clock must be inside the certificate's dates",
        "The certificate must be inside its validity period. Off: an expired certificate, whose "
        "key may have leaked, passes (seed 001 §5.2.3 b).",
        "001 §5.2.3 b",
    ),
    Protection(
        "pinning",
        "pin",
        CLIENT_CHECK,
        "the key must be the one recorded on first use (known_hosts)",
        "The server key is remembered on first use, like SSH's known_hosts, and a changed key is "
        "refused (seed 002 §三). Not part of `recommended`: it is the extra.",
        "002 §三 (SSH)",
    ),
    Protection(
        "mac",
        "mac",
        EACH_SIDE,
        "every record authenticated (AES-GCM or HMAC)",
        "Every record is authenticated (AEAD or HMAC). Off: the endpoint offers only unauthenticated "
        "AES-CTR, whose bits an attacker can flip (seed 002 §一.2, seed 003 完整性).",
        "002 §一.2 完整性; 003 完整性",
    ),
    Protection(
        "sequence_numbers",
        "seq",
        BOTH_AGREE,
        "the record counter is in every MAC",
        "An implicit per-direction record counter is bound into every record's MAC. "
        "Off: a recorded record played again is accepted (seed 003 加密数据传输).",
        "003 加密数据传输",
    ),
    Protection(
        "server_random",
        "srand",
        "the server's: no effect on a client",
        "the server's fresh random goes into the keys",
        "The server sends a fresh random that goes into the key derivation. Off: the server sends "
        "zeros, so a recorded client flight derives the same keys in a new connection (seed 001 §5.2.2).",
        "001 §5.2.2; 003 Server Hello",
    ),
    Protection(
        "per_direction_keys",
        "2keys",
        BOTH_AGREE,
        "client_write_key ≠ server_write_key",
        "client_write_key differs from server_write_key. Off: one key both ways, so a "
        "record sent back to its sender decrypts and verifies (seed 003 为什么要生成两个会话密钥).",
        "003 为什么要生成两个会话密钥",
    ),
    Protection(
        "transcript",
        "trans",
        EACH_SIDE,
        "Finished MACs cover the whole handshake",
        "Finished messages carry a MAC over the whole handshake. Off: an edited handshake, "
        "such as a ClientHello with its strong suites stripped, goes unnoticed (seed 001 §5.2.3 g).",
        "001 §5.2.3 g",
    ),
    Protection(
        "forward_secrecy",
        "fs",
        EACH_SIDE,
        "ECDHE offered and preferred; the share signed",
        "Ephemeral X25519 key exchange, signed by the server key, is offered and "
        "preferred. Off: only RSA key transport, so whoever later steals the server key decrypts "
        "recordings (seed 003 ECDHE).",
        "003 ECDHE",
    ),
)
PROTECTION_IDS: Final = tuple(p.id for p in PROTECTIONS)
BY_ID: Final[Mapping[str, Protection]] = {p.id: p for p in PROTECTIONS}


class UnknownProtectionError(ValueError):
    """A protection id or profile name that the lab does not have."""


@dataclasses.dataclass(frozen=True)
class Protections:
    """Which protections an endpoint applies; `PROTECTIONS` says what each one does.

    The default is the `recommended` profile: everything on except `pinning`.
    """

    encryption: bool = True
    ca_trust: bool = True
    hostname: bool = True
    validity: bool = True
    pinning: bool = False
    mac: bool = True
    sequence_numbers: bool = True
    server_random: bool = True
    per_direction_keys: bool = True
    transcript: bool = True
    forward_secrecy: bool = True

    def enabled(self) -> frozenset[str]:
        return frozenset(pid for pid in PROTECTION_IDS if getattr(self, pid))

    def without(self, *ids: str) -> Protections:
        """A copy with the given protections off."""
        return dataclasses.replace(self, **{_checked(pid): False for pid in ids})

    def plus(self, *ids: str) -> Protections:
        """A copy with the given protections on."""
        return dataclasses.replace(self, **{_checked(pid): True for pid in ids})

    def with_switches(self, switches: Mapping[str, bool]) -> Protections:
        """A copy with each id in `switches` set to its value."""
        return dataclasses.replace(self, **{_checked(pid): on for pid, on in switches.items()})

    def as_dict(self) -> dict[str, bool]:
        return {pid: getattr(self, pid) for pid in PROTECTION_IDS}

    @classmethod
    def only(cls, ids: Iterable[str]) -> Protections:
        """Exactly the given protections on, every other off."""
        return NONE.plus(*ids)

    @classmethod
    def profile(cls, name: str) -> Protections:
        try:
            return PROFILES[name]
        except KeyError:
            raise UnknownProtectionError(
                f"unknown profile {name!r}; profiles are: {', '.join(PROFILES)}"
            ) from None

    def describe(self) -> str:
        """A short human name: a profile name, or a profile plus/minus the differences."""
        for name, profile in PROFILES.items():
            if self == profile:
                return name
        missing = sorted(RECOMMENDED.enabled() - self.enabled())
        extra = sorted(self.enabled() - RECOMMENDED.enabled())
        if len(missing) + len(extra) <= len(self.enabled()):
            parts = ["recommended"] + [f"-{p}" for p in missing] + [f"+{p}" for p in extra]
            return " ".join(parts)
        return "none " + " ".join(f"+{p}" for p in sorted(self.enabled())) if self.enabled() else "none"


def _checked(pid: str) -> str:
    if pid not in PROTECTION_IDS:
        raise UnknownProtectionError(
            f"unknown protection {pid!r}; protections are: {', '.join(PROTECTION_IDS)}"
        )
    return pid


if tuple(f.name for f in dataclasses.fields(Protections)) != PROTECTION_IDS:  # one concept, checked once
    raise ImportError("the fields of Protections must be the ids of PROTECTIONS, in their order")

RECOMMENDED: Final = Protections()
NONE: Final = Protections(**{pid: False for pid in PROTECTION_IDS})
PROFILES: Final[Mapping[str, Protections]] = {"recommended": RECOMMENDED, "none": NONE}
