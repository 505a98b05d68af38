"""defence-sets: what it takes to stop each attack, found by runs.

1. **The floor**: the weakest profile in which the attack succeeds. First `none`; if the attack does not
   get through there (a downgrade needs strong offers to strip), `none` plus one protection, then plus
   two, each level run in full; the floor is the first compromised profile of the first level that has
   one, in the order of the protection ids.
2. **The minimal sets**: every set of protections that, added to the floor, stops the attack (blocked,
   or nothing left to act on) while no proper subset does. The search assumes monotonicity (adding a
   protection never helps the attacker) to learn the whole boundary without running every subset: it
   keeps the minimal stopping sets and the maximal non-stopping sets found so far, runs the smallest set
   neither of them decides, and grows a non-stopping one to a maximal one (or shrinks a stopping one to
   a minimal one) by one protection at a time, each step a run. For every minimal set the report links
   the run of the set itself and of each set with one protection fewer (shrinking ran them).
3. **The link layer**: where the lanes' roles are hosts of a lab network, the floor also runs with the
   attacker on the path by ARP poisoning, and so again with `static_arp` (docs/arp.md): if the floor
   through ARP is compromised and `static_arp` stops it, `static_arp` is a minimal set of its own
   (through ARP), in the sets and in the headline.
4. **The check**: among the runs it made, a set that stopped the attack and the same set plus one
   protection that let it through are reported as a finding: a protection that opened the attack.
   `exhaustive` runs every subset instead of searching (2^n runs), to test the search.

The headline cells it gives: `enough_alone` (a minimal set of one), `part_of_a_set` (in a larger
minimal set), `no_effect` (in no minimal set), `undetermined` (a run of the search ended in error). A
protection in the floor gets no cell: the attack needs it to work at all (downgrade, `mac`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from lab.channel.protections import NONE, PROTECTION_IDS, Protections
from lab.checker.views import STOPPED, Cell, Placement, ViewOutcome, cell_for
from lab.stacks import ARP, EVERY_PROTECTION
from lab.stacks.scenario import LAB_CHANNEL, Scenario

if TYPE_CHECKING:
    from lab.checker.runner import Runner, RunResult

FLOOR_LEVELS: Final = 2
"""How many protections the floor search adds to `none` at most."""

Set = frozenset[str]


class Undetermined(Exception):
    """A run the search rests on ended in error."""


def ordered(protections: Iterable[str]) -> list[str]:
    return sorted(protections, key=EVERY_PROTECTION.index)


def describe_set(protections: Iterable[str]) -> str:
    names = ordered(protections)
    return " + ".join(f"`{p}`" for p in names) if names else "nothing"


@dataclass
class AttackSearch:
    """The runs of one attack's search, and what they showed."""

    runner: Runner
    attack: str
    floor: Set = frozenset()
    placements: list[Placement] = field(default_factory=list)
    verdicts: dict[Set, RunResult] = field(default_factory=dict)
    """Every set of protections run above the floor (floor included, as the empty set)."""

    def scenario(self, extra: Set) -> Scenario:
        return Scenario.symmetric(self.attack, Protections.only(self.floor | extra))

    async def stops(self, extra: Set) -> bool:
        if extra not in self.verdicts:
            scenario = self.scenario(extra)
            label = "floor" if not extra else "floor +" + " +".join(ordered(extra))
            self.placements.append(Placement(VIEW.name, self.attack, label, scenario))
            self.verdicts[extra] = await self.runner.run(scenario)
        verdict = self.verdicts[extra].verdict
        if verdict.verdict == "error":
            raise Undetermined(f"{self.verdicts[extra].scenario.id}: {verdict.error}")
        return verdict.verdict in STOPPED

    async def all_stop(self, sets: Iterable[Set]) -> list[bool]:
        return list(await asyncio.gather(*(self.stops(s) for s in sets)))


async def find_floor(runner: Runner, attack: str, placements: list[Placement]) -> tuple[Set | None, str]:
    """The first compromised profile, level by level from `none` (see the module's docstring)."""
    for size in range(FLOOR_LEVELS + 1):
        level = [frozenset(c) for c in itertools.combinations(PROTECTION_IDS, size)]
        scenarios = [Scenario.symmetric(attack, Protections.only(c)) for c in level]
        for protections, scenario in zip(level, scenarios, strict=True):
            label = "floor search: " + (Protections.only(protections).describe())
            placements.append(Placement(VIEW.name, attack, label, scenario))
        results = await asyncio.gather(*(runner.run(s) for s in scenarios))
        for protections, result in zip(level, results, strict=True):  # in id order: the first decides
            if result.verdict.verdict == "error":
                raise Undetermined(f"{result.scenario.id}: {result.verdict.error}")
            if result.verdict.verdict == "compromised":
                return protections, f"compromised with {describe_set(protections) if protections else 'none'}"
    return None, f"not compromised by `none` plus up to {FLOOR_LEVELS} protections"


async def pruned(search: AttackSearch, candidates: Set) -> list[Set]:
    """The minimal stopping sets, learned from runs under monotonicity (the module's docstring)."""
    minimal: list[Set] = []
    maximal: list[Set] = []
    subsets = sorted(
        (
            frozenset(c)
            for n in range(len(candidates) + 1)
            for c in itertools.combinations(ordered(candidates), n)
        ),
        key=lambda s: (len(s), [PROTECTION_IDS.index(p) for p in ordered(s)]),
    )
    while True:
        undecided = next(
            (s for s in subsets if not any(m <= s for m in minimal) and not any(s <= n for n in maximal)),
            None,
        )
        if undecided is None:
            return minimal
        if await search.stops(undecided):
            minimal.append(await _shrink(search, undecided))
        else:
            maximal.append(await _grow(search, undecided, candidates, minimal))


async def _grow(search: AttackSearch, start: Set, candidates: Set, minimal: list[Set]) -> Set:
    """A maximal non-stopping superset of `start`: every one-protection addition at once; if those that
    do not stop it do not stop it together either, that is the answer, else they are added one by one."""

    def decided(extra: Set) -> bool:
        return any(m <= extra for m in minimal)

    additions = [p for p in ordered(candidates - start) if not decided(start | {p})]
    stopped = await search.all_stop(start | {p} for p in additions)
    keep = [p for p, stops in zip(additions, stopped, strict=True) if not stops]
    if not keep or not await search.stops(start | set(keep)):
        return start | set(keep)  # every other protection was just seen to stop it
    grown = start
    for protection in keep:  # some of them stop it together: greedily, in order
        if not decided(grown | {protection}) and not await search.stops(grown | {protection}):
            grown = grown | {protection}
    return grown


async def _shrink(search: AttackSearch, start: Set) -> Set:
    """A minimal stopping subset of `start`, one protection fewer at a time."""
    shrunk = start
    while True:
        fewer = [shrunk - {p} for p in ordered(shrunk)]
        stopped = await search.all_stop(fewer)
        smaller = next((s for s, stops in zip(fewer, stopped, strict=True) if stops), None)
        if smaller is None:
            return shrunk
        shrunk = smaller


async def exhaustive(search: AttackSearch, candidates: Set) -> list[Set]:
    """Every subset run; the minimal stopping sets read off them."""
    subsets = [
        frozenset(c)
        for n in range(len(candidates) + 1)
        for c in itertools.combinations(ordered(candidates), n)
    ]
    stopped = dict(zip(subsets, await search.all_stop(subsets), strict=True))
    stoppers = [s for s, stops in stopped.items() if stops]
    return [s for s in stoppers if not any(other < s for other in stoppers)]


async def link_layer(search: AttackSearch) -> tuple[dict[str, Any] | None, dict[str, Cell]]:
    """The floor through ARP poisoning, and with `static_arp`: that set, if it stops the attack there,
    and the headline cell of `static_arp`."""
    floor = search.scenario(frozenset())
    through, pinned = floor.positioned(ARP), floor.positioned(ARP, static_arp=True)
    for label, scenario in (("floor through arp", through), ("floor through arp +static_arp", pinned)):
        search.placements.append(Placement(VIEW.name, search.attack, label, scenario))
    poisoned, held = await asyncio.gather(search.runner.run(through), search.runner.run(pinned))
    stops = poisoned.verdict.verdict == "compromised" and held.verdict.verdict in STOPPED
    cell = cell_for((poisoned, held), "enough_alone" if stops else "no_effect")
    found = {
        "protections": ["static_arp"],
        "blocks": held.scenario.id,
        "without_one": {"static_arp": poisoned.scenario.id},
        "positioning": ARP,
    }
    return (found if stops else None), {"static_arp": cell}


def findings(verdicts: dict[Set, RunResult]) -> list[dict[str, Any]]:
    """Pairs of runs one protection apart where adding it let the attack through again."""
    found = []
    stops = {s: r.verdict.verdict in STOPPED for s, r in verdicts.items() if r.verdict.verdict != "error"}
    for smaller in sorted(stops, key=lambda s: (len(s), ordered(s))):
        for added in ordered(frozenset(PROTECTION_IDS) - smaller):
            larger = smaller | {added}
            if stops[smaller] and larger in stops and not stops[larger]:
                found.append(
                    {
                        "text": f"on the floor plus {describe_set(smaller)}, adding `{added}` let the "
                        "attack through again",
                        "runs": [verdicts[smaller].scenario.id, verdicts[larger].scenario.id],
                    }
                )
    return found


def sentence(sets: list[Set]) -> str:
    """The minimal sets, in one line a teacher can read out."""
    if not sets:
        return "stopped by no set of protections"
    if len(sets) == 1 and len(sets[0]) > 1:
        return f"stopped only by {describe_set(sets[0]).replace(' + ', ' and ')} together"
    parts = [describe_set(s).replace(" + ", " and ") + (" together" if len(s) > 1 else "") for s in sets]
    return "stopped by " + ", or by ".join(parts)


class DefenceSets:
    name: ClassVar[str] = "defence-sets"
    order: ClassVar[int] = 30
    stack: ClassVar[str] = LAB_CHANNEL
    summary: ClassVar[str] = "each attack's floor, and every minimal set of protections that stops it there"
    flags: ClassVar[Mapping[str, str]] = {
        "exhaustive": "defence-sets: run every subset of protections above each floor instead of searching "
        "(2^n runs an attack; to check the search)"
    }
    needs_lab_network: ClassVar[bool] = False
    programs: ClassVar[tuple[str, ...]] = ()

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        found = await asyncio.gather(
            *(self._attack(runner, a, settings.get("exhaustive", False)) for a in attacks)
        )
        outcome = ViewOutcome(section={"search": "exhaustive" if settings.get("exhaustive") else "pruned"})
        outcome.section["attacks"] = {}
        for attack, (placements, section, cells) in zip(attacks, found, strict=True):
            outcome.placements += placements
            outcome.section["attacks"][attack] = section
            outcome.headline[attack] = cells
        outcome.section["summary"] = [
            f"{attack}: {section.get('line') or section['how']}"
            for attack, section in outcome.section["attacks"].items()
        ]
        return outcome

    async def _attack(
        self, runner: Runner, attack: str, every_subset: bool
    ) -> tuple[list[Placement], dict[str, Any], dict[str, Cell]]:
        placements: list[Placement] = []
        try:
            floor, how = await find_floor(runner, attack, placements)
            if floor is None:
                return placements, {"floor": None, "how": how, "sets": [], "findings": []}, {}
            search = AttackSearch(runner, attack, floor, placements)
            candidates = frozenset(PROTECTION_IDS) - floor
            sets = await (exhaustive if every_subset else pruned)(search, candidates)
            sets = sorted(sets, key=lambda s: (len(s), [PROTECTION_IDS.index(p) for p in ordered(s)]))
            for minimal in sets:  # the runs that show it blocks and is minimal (the search ran them already)
                await search.all_stop([minimal, *(minimal - {p} for p in minimal)])
        except Undetermined as why:
            searched = tuple(p.scenario.id for p in placements)
            return (
                placements,
                {"floor": None, "how": f"undetermined: {why}", "sets": [], "findings": []},
                {p: Cell("undetermined", searched) for p in PROTECTION_IDS},
            )
        link_set, cells = await link_layer(search) if runner.on_a_lab_network else (None, {})
        link_sets = [link_set] if link_set else []
        section = {
            "floor": {
                "protections": ordered(floor),
                "profile": NONE.plus(*floor).describe(),
                "run": search.verdicts[frozenset()].scenario.id,
            },
            "how": how,
            "line": sentence(sets) + ("; through ARP, `static_arp` alone stops it too" if link_sets else ""),
            "sets": [
                *(
                    {
                        "protections": ordered(s),
                        "blocks": search.verdicts[s].scenario.id,
                        "without_one": {p: search.verdicts[s - {p}].scenario.id for p in ordered(s)},
                    }
                    for s in sets
                ),
                *link_sets,
            ],
            "findings": findings(search.verdicts),
            "runs": len(search.verdicts) + (2 if runner.on_a_lab_network else 0),
        }
        for protection in ordered(candidates):
            holding = [s for s in sets if protection in s]
            value = "no_effect"
            if frozenset({protection}) in sets:
                value = "enough_alone"
            elif holding:
                value = "part_of_a_set"
            runs = [search.verdicts[s].scenario.id for s in holding] or [
                search.verdicts[frozenset()].scenario.id
            ]
            cells[protection] = Cell(value, tuple(runs))
        return placements, section, cells


VIEW = DefenceSets()
