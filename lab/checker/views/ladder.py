"""ladder: the brief's story, one protection added per level, from `none` to `recommended`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final

from lab.channel.protections import NONE
from lab.checker.views import Placement, ViewOutcome
from lab.stacks.scenario import LAB_CHANNEL, Scenario

if TYPE_CHECKING:
    from lab.checker.runner import Runner

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


class Ladder:
    name: ClassVar[str] = "ladder"
    order: ClassVar[int] = 10
    stack: ClassVar[str] = LAB_CHANNEL
    summary: ClassVar[str] = "the brief's story, one protection added per level, from plaintext up"

    flags: ClassVar[Mapping[str, str]] = {}
    needs_lab_network: ClassVar[bool] = False
    programs: ClassVar[tuple[str, ...]] = ()

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        placements = []
        for attack in attacks:
            protections = NONE
            for level, added, _ in LADDER:
                protections = protections.plus(*added)
                placements.append(
                    Placement(self.name, attack, level, Scenario.symmetric(attack, protections))
                )
        await asyncio.gather(*(runner.run(p.scenario) for p in placements))
        levels = [{"level": level, "adds": list(adds), "story": story} for level, adds, story in LADDER]
        return ViewOutcome(placements, {"levels": levels})


VIEW = Ladder()
