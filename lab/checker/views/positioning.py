"""positioning: each attack with the attacker on the path by names and by ARP poisoning, side by side.

The channel's protections decide on what reaches the client, not on how the attacker got between it
and the server (docs/arp.md): for each attack, `none` and `recommended` run both ways, and a pair whose
verdicts differ is a finding. It needs lanes whose roles are hosts of a lab network (the compose lab,
or the local backend's namespaces as root), and so runs by default in the compose lab only. The
link layer's own defence, `static_arp`, is the defence-sets view's: a minimal set above each floor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from lab.channel.protections import NONE, RECOMMENDED
from lab.checker.views import Placement, ViewOutcome
from lab.stacks import ARP, NAMES
from lab.stacks.scenario import LAB_CHANNEL, Scenario

if TYPE_CHECKING:
    from lab.checker.runner import Runner, RunResult

PROFILES: Final = {"none": NONE, "recommended": RECOMMENDED}


class Positioning:
    name: ClassVar[str] = "positioning"
    order: ClassVar[int] = 35
    stack: ClassVar[str] = LAB_CHANNEL
    summary: ClassVar[str] = (
        "each attack on none and recommended, the attacker on the path by names and by ARP poisoning "
        "(needs a lab network: the compose lab, or namespaces as root)"
    )
    flags: ClassVar[Mapping[str, str]] = {}
    needs_lab_network: ClassVar[bool] = True
    programs: ClassVar[tuple[str, ...]] = ()

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        placements = [
            Placement(self.name, attack, f"{profile} by {way}", scenario.positioned(way))
            for attack in attacks
            for profile, protections in PROFILES.items()
            for scenario in [Scenario.symmetric(attack, protections)]
            for way in (NAMES, ARP)
        ]
        results = await asyncio.gather(*(runner.run(p.scenario) for p in placements))
        by_label = {(p.attack, p.label): r for p, r in zip(placements, results, strict=True)}
        rows = {
            attack: {profile: _pair(by_label, attack, profile) for profile in PROFILES} for attack in attacks
        }
        pairs = [pair for row in rows.values() for pair in row.values()]
        judged = [pair for pair in pairs if "error" not in (pair[NAMES]["verdict"], pair[ARP]["verdict"])]
        same = sum(pair["same"] for pair in judged)
        line = f"through ARP, {same} of {len(judged)} pairs give the verdict they give by names"
        if len(judged) < len(pairs):
            line += f" ({len(pairs) - len(judged)} with a run in error)"
        findings = [
            f"finding: {attack} on {profile} is {_said(pair[NAMES])} by names, {_said(pair[ARP])} through ARP"
            for attack, row in rows.items()
            for profile, pair in row.items()
            if pair in judged and not pair["same"]
        ]
        return ViewOutcome(placements, {"attacks": rows, "summary": [line, *findings]})


def _said(way: Mapping[str, Any]) -> str:
    return f"{way['verdict']} by {way['blocked_by']}" if way["blocked_by"] else str(way["verdict"])


def _pair(by_label: Mapping[tuple[str, str], RunResult], attack: str, profile: str) -> dict[str, Any]:
    named, poisoned = (by_label[(attack, f"{profile} by {way}")] for way in (NAMES, ARP))
    ways = {
        way: {"run": r.scenario.id, "verdict": r.verdict.verdict, "blocked_by": r.verdict.blocked_by}
        for way, r in ((NAMES, named), (ARP, poisoned))
    }
    same = all(ways[NAMES][key] == ways[ARP][key] for key in ("verdict", "blocked_by"))
    return {**ways, "same": same}


VIEW = Positioning()
