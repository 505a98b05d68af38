"""The attack catalog: each attack of the brief and the mitmproxy addon file that carries it out. Which
stacks an attack applies to, each stack says (`lab.stacks`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ADDONS_DIR: Final = Path(os.environ.get("MITMLAB_ADDONS", Path(__file__).resolve().parent.parent / "addons"))


@dataclass(frozen=True)
class Attack:
    id: str
    summary: str
    evidence: str
    """What, in the evidence, shows that it worked."""

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
        ),
        Attack(
            "wrong-host",
            "presents a genuine CA-signed certificate issued to attacker.lab",
            "the client logged in through the attacker, which read the password",
        ),
        Attack(
            "expired-cert",
            "presents the server's old, expired certificate, whose key leaked",
            "the client logged in through the attacker, which read the password",
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
        ),
        Attack(
            "rogue-ca",
            "intercepts TLS with a certificate from the attacker's CA, which a careless user installed",
            "the client completed its request through the attacker, which read the password",
        ),
        Attack(
            "revoked",
            "intercepts TLS with the bank's previous certificate, in date, revoked after its key leaked",
            "the client completed its request through the attacker, which read the password",
        ),
        Attack(
            "sslstrip",
            "keeps the client on plain HTTP: rewrites links and redirects, strips HSTS and Secure",
            "the password or the session cookie read on plain HTTP, and the cookie used",
        ),
        Attack(
            "host-key-swap",
            "answers the client's SSH connection with a host key of its own and relays to the real sshd",
            "the client logged in through the attacker, which read the password or ran its command",
        ),
        Attack(
            "rogue-host-ca",
            "answers the client's SSH connection with a host certificate for the server's name from the "
            "attacker's own SSH CA, and relays to the real sshd",
            "the client logged in through the attacker, which read the password or ran its command",
        ),
    )
}
ATTACK_IDS: Final = tuple(ATTACKS)


class UnknownAttackError(ValueError):
    pass


def attack(attack_id: str) -> Attack:
    try:
        return ATTACKS[attack_id]
    except KeyError:
        raise UnknownAttackError(
            f"unknown attack {attack_id!r}; attacks are: {', '.join(ATTACK_IDS)}"
        ) from None
