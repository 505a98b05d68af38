"""The views of the brief, assembled from runs, and the headline table derived from them.

Headline cell for an attack and a protection, from the runs (never from a table of expectations):

- `needed`: in the ablation, `recommended` minus this protection let the attack through while
  `recommended` did not: it is the one thing standing in the attack's way.
- `stops_alone`: in the isolation, the weak profile plus this protection alone did not let the attack
  through (blocked, or nothing left to act on).
- `no_effect`: neither: the attack fares the same with or without it.
- `undetermined`: a run this cell depends on ended in `error`.

A protection that is both needed and stops the attack alone is shown as `needed`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from lab.channel.protections import PROTECTION_IDS, RECOMMENDED, Protections
from lab.checker.runner import Runner, RunResult
from lab.checker.scenarios import MAX_PEEL, Placement, isolation_additions, with_pin_if_needed

STOPPED: Final = ("blocked", "unaffected")


@dataclass
class WeakProfile:
    """How the isolation view's weak profile for one attack was found."""

    attack: str
    protections: Protections | None
    """None when peeling found no profile in which the attack succeeds."""
    peeled: list[str] = field(default_factory=list)
    reason: str = ""


async def isolation(runner: Runner, attack: str) -> tuple[WeakProfile, list[Placement]]:
    """Peel protections off `recommended` until the attack succeeds, then add each back alone."""
    placements: list[Placement] = []
    weak = WeakProfile(attack, None)
    protections = RECOMMENDED
    for step in range(1, MAX_PEEL + 1):
        scenario = with_pin_if_needed(attack, protections)
        result = await runner.run(scenario)
        verdict = result.verdict
        if verdict.verdict == "compromised":
            placements.append(Placement("isolation", attack, "weak", scenario))
            weak.protections, weak.reason = protections, f"compromised after peeling {len(weak.peeled)}"
            break
        placements.append(Placement("isolation", attack, f"peel {step}", scenario))
        blocker = verdict.blocked_by
        if verdict.verdict != "blocked" or blocker not in PROTECTION_IDS or not getattr(protections, blocker):
            weak.reason = f"peeling stopped at step {step}: {verdict.verdict}, nothing left to peel"
            break
        weak.peeled.append(blocker)
        protections = protections.without(blocker)
    if weak.protections is None:
        return weak, placements
    additions = list(isolation_additions(attack, weak.protections))
    await asyncio.gather(*(runner.run(placement.scenario) for placement in additions))
    return weak, placements + additions


@dataclass(frozen=True)
class Cell:
    value: str
    runs: tuple[str, ...]
    """The scenario ids this cell was derived from."""


def headline(
    placements: list[Placement], results: dict[str, RunResult], attacks: tuple[str, ...]
) -> dict[str, dict[str, Cell]]:
    def find(view: str, attack: str, label: str) -> RunResult | None:
        for placement in placements:
            if (placement.view, placement.attack, placement.label) == (view, attack, label):
                return results.get(placement.scenario.id)
        return None

    table: dict[str, dict[str, Cell]] = {}
    for attack in attacks:
        baseline = find("ablation", attack, "baseline")
        weak = find("isolation", attack, "weak")
        row: dict[str, Cell] = {}
        for protection in PROTECTION_IDS:
            ablated = find("ablation", attack, protection)
            isolated = find("isolation", attack, protection)
            used = [r for r in (baseline, ablated, weak, isolated) if r is not None]
            runs = tuple(r.scenario.id for r in used)
            if any(r.verdict.verdict == "error" for r in used):
                row[protection] = Cell("undetermined", runs)
            elif (
                ablated
                and baseline
                and ablated.verdict.verdict == "compromised"
                and baseline.verdict.verdict != "compromised"
            ):
                row[protection] = Cell("needed", runs)
            elif isolated and isolated.verdict.verdict in STOPPED:
                row[protection] = Cell("stops_alone", runs)
            else:
                row[protection] = Cell("no_effect", runs)
        table[attack] = row
    return table
