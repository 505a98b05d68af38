"""The attack catalog: each attack of the brief and the mitmproxy addon file that carries it out."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lab.stacks import LAB_CHANNEL, REAL_TLS

ADDONS_DIR: Final = Path(os.environ.get("MITMLAB_ADDONS", Path(__file__).resolve().parent.parent / "addons"))


@dataclass(frozen=True)
class Attack:
    id: str
    summary: str
    evidence: str
    """What, in the evidence, shows that it worked."""
    stacks: tuple[str, ...] = (LAB_CHANNEL,)
    """The stacks (`lab.stacks`) it applies to."""

    @property
    def addon(self) -> Path:
        return ADDONS_DIR / f"{self.id.replace('-', '_')}.py"


ATTACKS: Final = {
    a.id: a
    for a in (
        Attack(
            "eavesdrop",
            "reads the traffic passively",
            "a secret appears in the attacker's capture",
            (LAB_CHANNEL, REAL_TLS),
        ),
        Attack(
            "pubkey-swap",
            "replaces the server's public key with its own and relays both ways",
            "the client logged in through the attacker, which read the password",
        ),
        Attack(
            "self-signed",
            "presents a self-signed certificate for the right name",
            "the client logged in through the attacker, which read the password",
            (LAB_CHANNEL, REAL_TLS),
        ),
        Attack(
            "wrong-host",
            "presents a genuine CA-signed certificate issued to attacker.lab",
            "the client logged in through the attacker, which read the password",
            (LAB_CHANNEL, REAL_TLS),
        ),
        Attack(
            "expired-cert",
            "presents the server's old, expired certificate, whose key leaked",
            "the client logged in through the attacker, which read the password",
            (LAB_CHANNEL, REAL_TLS),
        ),
        Attack(
            "bit-flip",
            "flips ciphertext bits to change a transfer's recipient",
            "the server executed a transfer the client never sent",
        ),
        Attack(
            "replay",
            "sends a recorded transfer record again in the same session",
            "one transfer executed twice",
        ),
        Attack(
            "session-replay",
            "replays the client's whole recorded flight into a new connection",
            "the transfer executed again, in a new session",
        ),
        Attack(
            "reflection",
            "sends the client's own record back to it as if from the server",
            "the client accepted its own message, sent back, as the server's",
        ),
        Attack(
            "downgrade",
            "strips the strong suites from the ClientHello",
            "the session ran on a weaker suite than both sides support",
        ),
        Attack(
            "key-compromise",
            "records a session, later decrypts it with the stolen server key",
            "recorded secrets decrypted",
        ),
        Attack(
            "untrusted-root",
            "intercepts TLS with a certificate from mitmproxy's own CA, which nobody trusts",
            "the client completed its request through the attacker, which read the password",
            (REAL_TLS,),
        ),
        Attack(
            "rogue-ca",
            "intercepts TLS with a certificate from the attacker's CA, which a careless user installed",
            "the client completed its request through the attacker, which read the password",
            (REAL_TLS,),
        ),
        Attack(
            "revoked",
            "intercepts TLS with the bank's previous certificate, in date, revoked after its key leaked",
            "the client completed its request through the attacker, which read the password",
            (REAL_TLS,),
        ),
        Attack(
            "sslstrip",
            "keeps the client on plain HTTP: rewrites links and redirects, strips HSTS and Secure",
            "the password or the session cookie read on plain HTTP, and the cookie used",
            (REAL_TLS,),
        ),
    )
}
ATTACK_IDS: Final = tuple(ATTACKS)


def attacks_on(stack: str, chosen: Iterable[str] | None = None) -> tuple[str, ...]:
    """The attacks that apply to `stack`, in catalog order; of `chosen` only, if given."""
    among = set(ATTACKS) if chosen is None else set(chosen)
    return tuple(a.id for a in ATTACKS.values() if stack in a.stacks and a.id in among)


class UnknownAttackError(ValueError):
    pass


def attack(attack_id: str) -> Attack:
    try:
        return ATTACKS[attack_id]
    except KeyError:
        raise UnknownAttackError(
            f"unknown attack {attack_id!r}; attacks are: {', '.join(ATTACK_IDS)}"
        ) from None
