"""A scenario: an attack, the client's and the server's protections, the stack it runs on.

The views (`lab.checker.views`) choose which scenarios to run; nothing here says what a run's verdict
should be.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Final

from lab import stacks
from lab.attacks import attack
from lab.channel.protections import NONE, PROTECTION_IDS, Protections
from lab.stacks import ARP, NAMES, POSITIONINGS

LAB_CHANNEL: Final = "lab-channel"
"""The stack a scenario runs on unless it names another: the lab channel, whose protections are the
`client` and `server` switches every scenario holds."""


@dataclass(frozen=True)
class Scenario:
    attack: str | None
    """None: no attack, the attacker relays untouched (a clean session)."""
    client: Protections
    server: Protections
    """Each side's own. The identity checks are the client's; server_random is the server's; the
    record-layer features must agree (docs/protocol.md)."""
    pin_first: bool = False
    """Make a clean session first so that the key pin exists (pinning is trust on first use)."""
    stack: str = LAB_CHANNEL
    victim: str | None = None
    """On a stack whose scenarios name their client (`Stack.clients`), that client: on real TLS a real
    client (`lab.clients.adapters.CLIENTS`), or `lab.stacks.real_tls.PROBE` and a command of one's own;
    its protections are its own settings, so `client` and `server` are `none`."""
    positioning: str = NAMES
    """How the attacker gets on the path (`lab.stacks.POSITIONINGS`)."""
    static_arp: bool = False
    """ARP positioning only: the client pins the server's ARP entry first (the `static_arp` protection)."""

    def __post_init__(self) -> None:
        on = stacks.STACKS.get(self.stack)
        if on is None:
            raise ValueError(f"unknown stack {self.stack!r}; stacks are {', '.join(stacks.STACKS)}")
        if self.attack is not None and attack(self.attack).id not in on.attacks:
            raise ValueError(f"{self.attack} does not apply to the {self.stack} stack")
        if (self.victim is not None) != bool(on.clients):
            raise ValueError(f"a scenario on {self.stack} {'names' if on.clients else 'has no'} victim")
        if self.positioning not in POSITIONINGS:
            raise ValueError(f"unknown positioning {self.positioning!r}; they are {', '.join(POSITIONINGS)}")
        if self.static_arp and self.positioning != ARP:
            raise ValueError("static_arp is a defence against ARP positioning: it needs positioning arp")

    @classmethod
    def visit(cls, stack: str, attack: str | None, victim: str) -> Scenario:
        """`victim`'s run on `stack`, through `attack` (None: the attacker only relays)."""
        return cls(attack, NONE, NONE, stack=stack, victim=victim)

    @classmethod
    def symmetric(cls, attack: str | None, protections: Protections) -> Scenario:
        """Both sides with the same protections (what the views run), pinning first if it pins."""
        return cls(attack, protections, protections, pin_first=protections.pinning)

    @property
    def symmetric_protections(self) -> Protections | None:
        """The protections of both sides when they are equal."""
        return self.client if self.client == self.server else None

    @property
    def id(self) -> str:
        """Stable across runs: the same scenario has the same id in every report."""
        bits = (
            _bits(self.client) if self.client == self.server else f"{_bits(self.client)}/{_bits(self.server)}"
        )
        stack = "" if self.victim is None else f":{self.stack}:{self.victim}"
        position = "" if self.positioning == NAMES else f":{self.positioning}:{self.static_arp}"
        tag = hashlib.sha256(f"{self.attack}:{bits}:{self.pin_first}{stack}{position}".encode()).hexdigest()[
            :8
        ]
        return f"{self.attack or 'clean'}-{tag}"

    def positioned(self, positioning: str, *, static_arp: bool = False) -> Scenario:
        """The same scenario, the attacker getting on the path by `positioning`."""
        return dataclasses.replace(self, positioning=positioning, static_arp=static_arp)

    @property
    def profile(self) -> str:
        if self.victim is not None:
            return self.victim
        if self.client == self.server:
            described = self.client.describe()
        else:
            described = f"client {self.client.describe()}; server {self.server.describe()}"
        return f"{described} +static_arp" if self.static_arp else described


def _bits(protections: Protections) -> str:
    return "".join("1" if protections.as_dict()[p] else "0" for p in PROTECTION_IDS)
