"""Typed errors of the lab channel.

Three families, as in h11 and aioquic:

- `Refusal`: a protection fired. It names the protection id and the handshake or record step, so the
  checker attributes a block from these fields and never from message text.
- `RemoteProtocolError`: the peer (or an attacker) sent something the protocol does not allow: a
  malformed, truncated, oversized or out-of-order frame. No protection is about it.
- `LocalProtocolError`: this program misused the API (a bug in the lab, not an attack).

`PeerRefused` is what an endpoint raises when the other side's alert says that it refused.
"""

from __future__ import annotations

from typing import ClassVar


class ChannelError(Exception):
    """Base of every error the lab channel raises on purpose."""

    step: str

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(message)
        self.message = message
        self.step = step


class Refusal(ChannelError):
    """A protection refused what it saw. `protection` is a protection id of the brief."""

    protection: ClassVar[str]

    def __str__(self) -> str:
        return f"refused by {self.protection} at {self.step}: {self.message}"


class CertificateUntrusted(Refusal):
    protection = "ca_trust"


class NoNameToVerifyChainFor(CertificateUntrusted):
    """The leaf carries no DNS name cryptography's verifier takes, so its chain cannot be judged. A name
    defect: with `hostname` on, that check refuses first."""


class ChainTooLarge(CertificateUntrusted):
    """More certificates or bytes than the client builds a path through: refused before any verification,
    since path building over a hostile chain can take minutes (x509-limbo's pathological chains)."""


class HostnameMismatch(Refusal):
    protection = "hostname"


class CertificateNotValidNow(Refusal):
    protection = "validity"


class PinnedKeyChanged(Refusal):
    protection = "pinning"


class PlaintextRefused(Refusal):
    """The server chose a suite without encryption, which this endpoint never offered."""

    protection = "encryption"


class RecordTampered(Refusal):
    """A record fails its MAC or AEAD tag and is not one seen before: altered on the way."""

    protection = "mac"


class RecordOutOfSequence(Refusal):
    """A record verifies, but not as the next one of the peer's stream: replayed, or sent back."""

    protection = "sequence_numbers"


class RecordReflected(Refusal):
    """One of this side's own records came back: it does not verify under the peer's write key."""

    protection = "per_direction_keys"


class HandshakeTampered(Refusal):
    protection = "transcript"


class KeyShareForged(Refusal):
    """The ephemeral key share is not signed by the certified key."""

    protection = "forward_secrecy"


class StaleKeysFromServerRandom(Refusal):
    """The peer's Finished was computed for other keys: a flight recorded for another server random."""

    protection = "server_random"


class StaleKeysFromEphemeralShare(Refusal):
    """The peer's Finished was computed for other keys: a flight recorded for another ephemeral share."""

    protection = "forward_secrecy"


class RemoteProtocolError(ChannelError):
    """The peer sent bytes the protocol does not allow. No protection is about it."""

    def __str__(self) -> str:
        return f"protocol error at {self.step}: {self.message}"


class FrameTooLarge(RemoteProtocolError):
    """A frame header announced more bytes than the hard limit."""


class UnexpectedMessage(RemoteProtocolError):
    """A message arrived in a state where the protocol does not allow it."""


class PeerStalled(RemoteProtocolError):
    """The peer stalled: nothing usable arrived before the deadline (mid-handshake or between records)."""


class ConnectionClosedEarly(RemoteProtocolError):
    """The peer closed the connection in the middle of a frame or of the handshake."""


class PeerRefused(ChannelError):
    """The other endpoint sent an alert: it refused (a protection fired there) or hit a protocol error."""

    def __init__(self, message: str, *, step: str, protection: str | None) -> None:
        super().__init__(message, step=step)
        self.protection = protection

    def __str__(self) -> str:
        if self.protection:
            return f"the peer refused, by {self.protection} at {self.step}: {self.message}"
        return f"the peer reported a protocol error at {self.step}: {self.message}"


class LocalProtocolError(Exception):
    """This program used the channel API wrongly: a lab bug, never an attack."""
