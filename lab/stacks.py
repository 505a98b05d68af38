"""The stacks a scenario can run on: the protocol the client, the attacker and the server speak.

Two: the lab channel (docs/protocol.md), whose every protection is a switch, and real TLS (docs/tls.md),
an HTTPS bank and real clients, whose protections are the clients' own settings. A scenario
names its stack and an attack the stacks it applies to; a scenario of an attack on a stack it does not
apply to cannot be made (`Scenario` refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from lab.channel.protections import BY_ID, PROTECTION_IDS
from lab.protection import CLIENT_SETTING, Protection


@dataclass(frozen=True)
class Stack:
    id: str
    summary: str
    protections: tuple[str, ...]
    """The protections that can stop an attack on it."""


LAB_CHANNEL: Final = "lab-channel"
REAL_TLS: Final = "real-tls"

CLIENT_SETTINGS: Final = {
    p.id: p
    for p in (
        Protection(
            "revocation",
            "crl",
            CLIENT_SETTING,
            "the server's certificate checked against the CA's revocation list",
            "the client checks the server's certificate against the CA's revocation list (a CRL)",
            "001 §5.2.3 c",
        ),
        Protection(
            "hsts",
            "hsts",
            CLIENT_SETTING,
            "bank.lab known as HTTPS only",
            "the client knows bank.lab is HTTPS only (HSTS, remembered or preloaded) and never sends it "
            "plain HTTP",
            "",
        ),
    )
}
"""The protections of real TLS that the lab channel has no switch for: real clients' own settings."""

STACKS: Final = {
    stack.id: stack
    for stack in (
        Stack(
            LAB_CHANNEL,
            "the lab's own TLS-like channel, every protection a switch (docs/protocol.md)",
            PROTECTION_IDS,
        ),
        Stack(
            REAL_TLS,
            "real TLS: the HTTPS bank, mitmproxy intercepting, real clients (docs/tls.md)",
            ("ca_trust", "hostname", "validity", *CLIENT_SETTINGS, "pinning"),
        ),
    )
}

NAMES: Final = "names"
ARP: Final = "arp"
POSITIONINGS: Final = {
    NAMES: "the client dials the attacker under the server's name (the lab's DNS, or its --resolve)",
    ARP: "the client dials the server's own address; the attacker poisons both ARP caches and redirects "
    "the server's ports to mitmproxy's transparent mode (docs/arp.md)",
}
"""How the attacker got on the path: each run says which."""

LINK_LAYER: Final = {
    p.id: p
    for p in (
        Protection(
            "static_arp",
            "sarp",
            CLIENT_SETTING,
            "a permanent ARP entry for the server",
            "the client holds a permanent ARP entry for the server, which no ARP reply moves (as hardened "
            "hosts and a switch's dynamic ARP inspection give)",
            "004 TCP三次握手建立连接",
        ),
    )
}
"""The protections against ARP positioning: the client's own settings, as on a hardened host."""


def _one_each(*groups: Mapping[str, Protection]) -> dict[str, Protection]:
    merged: dict[str, Protection] = {}
    for group in groups:
        for pid, protection in group.items():
            if pid in merged:
                raise ValueError(f"the protection {pid!r} is defined twice")
            merged[pid] = protection
    return merged


PROTECTIONS_BY_ID: Final = _one_each(BY_ID, CLIENT_SETTINGS, LINK_LAYER)
"""Every protection of every stack and of the link layer, by id, each defined once."""
EVERY_PROTECTION: Final = tuple(PROTECTIONS_BY_ID)
"""Every protection id of every stack, and of the link layer: what evidence may name."""
if not {p for stack in STACKS.values() for p in stack.protections} <= set(EVERY_PROTECTION):
    raise ValueError("a stack names a protection that is not defined")  # one concept, checked once
