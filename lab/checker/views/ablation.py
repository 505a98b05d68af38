"""ablation: `recommended`, and `recommended` minus one protection at a time.

Its headline cell is `needed` where taking the protection away let the attack through while
`recommended` did not, and `no_effect` otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from lab.channel.protections import PROTECTION_IDS, RECOMMENDED
from lab.checker.views import Cell, Placement, ViewOutcome, cell_for
from lab.stacks.scenario import LAB_CHANNEL, Scenario

if TYPE_CHECKING:
    from lab.checker.runner import Runner

REMOVED = tuple(p for p in PROTECTION_IDS if getattr(RECOMMENDED, p))


class Ablation:
    name: ClassVar[str] = "ablation"
    order: ClassVar[int] = 20
    stack: ClassVar[str] = LAB_CHANNEL
    summary: ClassVar[str] = "recommended, minus one protection at a time"

    flags: ClassVar[Mapping[str, str]] = {}
    needs_lab_network: ClassVar[bool] = False
    programs: ClassVar[tuple[str, ...]] = ()

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        placements = [
            Placement(self.name, attack, label, Scenario.symmetric(attack, RECOMMENDED.without(*removed)))
            for attack in attacks
            for label, removed in [("baseline", ()), *((p, (p,)) for p in REMOVED)]
        ]
        results = await asyncio.gather(*(runner.run(p.scenario) for p in placements))
        by_label = {(p.attack, p.label): r for p, r in zip(placements, results, strict=True)}
        headline: dict[str, dict[str, Cell]] = {}
        for attack in attacks:
            baseline = by_label[(attack, "baseline")]
            row = {}
            for protection in PROTECTION_IDS:
                ablated = by_label.get((attack, protection))
                needed = (
                    ablated is not None
                    and ablated.verdict.verdict == "compromised"
                    and baseline.verdict.verdict != "compromised"
                )
                row[protection] = cell_for((baseline, ablated), "needed" if needed else "no_effect")
            headline[attack] = row
        return ViewOutcome(placements, {"removed": list(REMOVED)}, headline)


VIEW = Ablation()
