"""A whole check: start the roles, run the views' scenarios in parallel lanes, assemble the views."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.checker.backends import Backend
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.checker.scenarios import VIEWS, Placement, ablation, ladder
from lab.checker.views import Cell, WeakProfile, headline, isolation
from lab.state import StateDir


@dataclass
class CheckResult:
    views: tuple[str, ...]
    attacks: tuple[str, ...]
    backend: str
    started: datetime.datetime
    finished: datetime.datetime
    placements: list[Placement] = field(default_factory=list)
    results: dict[str, RunResult] = field(default_factory=dict)
    weak_profiles: dict[str, WeakProfile] = field(default_factory=dict)
    headline: dict[str, dict[str, Cell]] = field(default_factory=dict)

    @property
    def errors(self) -> list[RunResult]:
        return [r for r in self.results.values() if r.verdict.verdict == "error"]

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()


def planned_runs(views: tuple[str, ...], attacks: tuple[str, ...]) -> int:
    """Scenarios known before running (isolation adds more as it peels): for the progress bar."""
    static = {p.scenario.id for p in _static_placements(views, attacks)}
    return len(static) + (3 * len(attacks) if "isolation" in views else 0)


def _static_placements(views: tuple[str, ...], attacks: tuple[str, ...]) -> list[Placement]:
    placements: list[Placement] = []
    if "ablation" in views:
        placements += ablation(attacks)
    if "ladder" in views:
        placements += ladder(attacks)
    return placements


async def run_check(
    backend: Backend,
    template: StateDir,
    views: tuple[str, ...],
    attacks: tuple[str, ...],
    jobs: int,
    out: Path,
    on_result: Callable[[RunResult], None] = lambda result: None,
) -> CheckResult:
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}; views are {', '.join(VIEWS)}")
    started = datetime.datetime.now(datetime.UTC)
    try:
        lanes = await backend.start(jobs)
        runner = Runner(backend, lanes, ground_truth(template), out, on_result)
        placements = _static_placements(views, attacks)
        static = [runner.run(p.scenario) for p in placements]
        isolations = [isolation(runner, attack) for attack in attacks] if "isolation" in views else []
        _, isolated = await asyncio.gather(asyncio.gather(*static), asyncio.gather(*isolations))
    finally:
        await backend.stop()
    result = CheckResult(views, attacks, backend.name, started, datetime.datetime.now(datetime.UTC))
    result.placements = placements + [p for _, found in isolated for p in found]
    result.weak_profiles = {weak.attack: weak for weak, _ in isolated}
    result.results = runner.results
    result.headline = headline(result.placements, result.results, attacks)
    return result
