"""Scenarios and the catalog of views.

A scenario is an attack, the protections of each side, and the client's session (log in, transfer,
read the balance). The catalog builds the views of the brief:

- **ablation**: `recommended`, and `recommended` minus one protection at a time.
- **ladder**: the brief's story, one protection added per level, from `none` to `recommended`.
- **isolation**: for each attack a weak profile in which it succeeds, plus one protection at a time.
  The weak profile is found by peeling (`peel`): start from `recommended`; while the attack is blocked,
  switch off the protection that blocked it (as the typed refusal named it) and run again. The first
  profile in which the attack succeeds is the weak profile; every step is a run in the report. Then each
  protection that is off in the weak profile is added back alone.

Nothing here says what a run's verdict should be: the catalog only chooses what to run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from lab.channel.protections import NONE, PROTECTION_IDS, RECOMMENDED, Protections

VIEWS: Final = ("ablation", "isolation", "ladder")

LADDER: Final = (
    ("plaintext", (), "Plain HTTP can be read by anyone on the path."),
    ("encryption", ("encryption",), "Encrypt with a symmetric key, sent under the server's public key."),
    ("ca_trust", ("ca_trust",), "The attacker swaps the public key: have a CA sign it."),
    ("hostname", ("hostname",), "The attacker owns a CA-signed certificate too, for another name: check it."),
    ("validity", ("validity",), "An old certificate whose key leaked: check the dates."),
    ("mac", ("mac",), "Encrypted data can still be flipped: authenticate every record."),
    ("sequence_numbers", ("sequence_numbers",), "A record can be replayed: number the records."),
    ("per_direction_keys", ("per_direction_keys",), "A record can be sent back: one key per direction."),
    ("server_random", ("server_random",), "A whole session can be replayed: the server adds a fresh random."),
    ("transcript", ("transcript",), "A handshake can be downgraded: MAC the whole handshake."),
    ("forward_secrecy", ("forward_secrecy",), "A key stolen later decrypts recordings: ephemeral ECDHE."),
)
"""The story of the brief (seed 001 §4.2, seed 003): each level adds one protection to the one before."""


@dataclass(frozen=True)
class Scenario:
    attack: str | None
    """None: no attack, the attacker relays untouched (a clean session)."""
    protections: Protections
    """Both sides'. The identity checks are the client's; server_random is the server's."""
    pin_first: bool = False
    """Make a clean session first so that the key pin exists (pinning is trust on first use)."""

    @property
    def id(self) -> str:
        """Stable across runs: the same scenario has the same id in every report."""
        bits = "".join("1" if self.protections.as_dict()[p] else "0" for p in PROTECTION_IDS)
        tag = hashlib.sha256(f"{self.attack}:{bits}:{self.pin_first}".encode()).hexdigest()[:8]
        return f"{self.attack or 'clean'}-{tag}"

    @property
    def profile(self) -> str:
        return self.protections.describe()


@dataclass(frozen=True)
class Placement:
    """Where a scenario appears in a view (one scenario can appear in several)."""

    view: str
    attack: str
    label: str
    """'baseline', a protection id (ablation and isolation), 'weak', 'peel 2', or a ladder level."""
    scenario: Scenario


def with_pin_if_needed(attack: str, protections: Protections) -> Scenario:
    return Scenario(attack, protections, pin_first=protections.pinning)


def ablation(attacks: tuple[str, ...]) -> Iterator[Placement]:
    for attack in attacks:
        yield Placement("ablation", attack, "baseline", with_pin_if_needed(attack, RECOMMENDED))
        for protection in sorted(RECOMMENDED.enabled(), key=PROTECTION_IDS.index):
            yield Placement(
                "ablation", attack, protection, with_pin_if_needed(attack, RECOMMENDED.without(protection))
            )


def ladder(attacks: tuple[str, ...]) -> Iterator[Placement]:
    for attack in attacks:
        protections = NONE
        for level, added, _ in LADDER:
            protections = protections.plus(*added)
            yield Placement("ladder", attack, level, with_pin_if_needed(attack, protections))


def isolation_additions(attack: str, weak: Protections) -> Iterator[Placement]:
    """The weak profile plus each protection that is off in it, one at a time."""
    for protection in PROTECTION_IDS:
        if not getattr(weak, protection):
            yield Placement(
                "isolation", attack, protection, with_pin_if_needed(attack, weak.plus(protection))
            )


MAX_PEEL: Final = len(PROTECTION_IDS)
