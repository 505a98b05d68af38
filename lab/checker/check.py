"""A whole check: start the roles, run the chosen views' scenarios in parallel lanes, merge the headline."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.checker.backends import Backend
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.checker.views import VIEWS, Headline, Placement, View, ViewOutcome, attacks_for, merge_headlines
from lab.stacks import NAMES
from lab.state import StateDir


@dataclass
class CheckResult:
    views: tuple[str, ...]
    attacks: tuple[str, ...]
    backend: str
    started: datetime.datetime
    finished: datetime.datetime
    outcomes: dict[str, ViewOutcome] = field(default_factory=dict)
    results: dict[str, RunResult] = field(default_factory=dict)
    headline: Headline = field(default_factory=dict)
    lanes_ready: datetime.datetime | None = None
    """When every lane's roles answered: what comes before is start-up, not scenarios."""

    @property
    def placements(self) -> list[Placement]:
        return [p for outcome in self.outcomes.values() for p in outcome.placements]

    @property
    def errors(self) -> list[RunResult]:
        return [r for r in self.results.values() if r.verdict.verdict == "error"]

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()

    @property
    def scenarios_s(self) -> float:
        """The time the scenarios took, the roles' start-up left out."""
        return (self.finished - (self.lanes_ready or self.started)).total_seconds()


async def run_check(
    backend: Backend,
    template: StateDir,
    views: tuple[str, ...],
    attacks: tuple[str, ...],
    jobs: int,
    out: Path,
    on_result: Callable[[RunResult], None] = lambda result: None,
    settings: Mapping[str, bool] | None = None,
    custom: Mapping[str, View] | None = None,
    *,
    on_planned: Callable[[int], None] = lambda runs: None,
    positioning: str = NAMES,
    static_arp: bool = False,
    capture: bool = True,
) -> CheckResult:
    """`settings`: the value of each view flag (`View.flags`), off when absent; `custom`: views made
    for this check that stand in for those of the same name (`mitmlab probe`'s clients view);
    `on_result`, `on_planned`: told of each result, and of the runs asked for so far (`Runner`);
    `positioning`, `static_arp`: how the attacker gets on the path in every scenario
    (ARP needs a backend whose lanes have a lab network: docs/arp.md); `capture`: a pcapng of every
    run where the attacker can take one (docs/wireshark.md)."""
    known = {**VIEWS, **(custom or {})}
    unknown = set(views) - set(known)
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}; views are {', '.join(VIEWS)}")
    started = datetime.datetime.now(datetime.UTC)
    flags = dict(settings or {})
    try:
        lanes = await backend.start(jobs)
        lanes_ready = datetime.datetime.now(datetime.UTC)
        runner = Runner(
            backend,
            lanes,
            ground_truth(template),
            out,
            on_result,
            on_planned=on_planned,
            positioning=positioning,
            static_arp=static_arp,
            capture=capture,
        )
        outcomes = await asyncio.gather(
            *(known[name].run(runner, attacks_for(known[name], attacks), flags) for name in views)
        )
    finally:
        await backend.stop()
    result = CheckResult(views, attacks, backend.name, started, datetime.datetime.now(datetime.UTC))
    result.lanes_ready = lanes_ready
    result.outcomes = dict(zip(views, outcomes, strict=True))
    result.results = runner.results
    # The headline's rows: the attacks of the views that tell cells (those whose protections are
    # switches they turn on and off).
    told = {
        a
        for name, outcome in result.outcomes.items()
        if outcome.headline
        for a in attacks_for(known[name], attacks)
    }
    result.headline = merge_headlines(outcomes, tuple(a for a in attacks if a in told))
    return result
