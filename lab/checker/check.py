"""A whole check: start the roles, run the chosen views' scenarios in parallel lanes, merge the headline."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.checker.backends import Backend
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.checker.scenarios import Placement
from lab.checker.views import VIEWS, Headline, ViewOutcome, merge_headlines
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

    @property
    def placements(self) -> list[Placement]:
        return [p for outcome in self.outcomes.values() for p in outcome.placements]

    @property
    def errors(self) -> list[RunResult]:
        return [r for r in self.results.values() if r.verdict.verdict == "error"]

    @property
    def duration_s(self) -> float:
        return (self.finished - self.started).total_seconds()


def planned_runs(
    views: tuple[str, ...], attacks: tuple[str, ...], settings: Mapping[str, bool] | None = None
) -> int:
    """About how many runs the views ask for (some plan as they go): for the progress bar."""
    return sum(VIEWS[name].planned_runs(attacks, settings or {}) for name in views)


async def run_check(
    backend: Backend,
    template: StateDir,
    views: tuple[str, ...],
    attacks: tuple[str, ...],
    jobs: int,
    out: Path,
    on_result: Callable[[RunResult], None] = lambda result: None,
    settings: Mapping[str, bool] | None = None,
) -> CheckResult:
    """`settings`: the value of each view flag (`View.flags`), off when absent."""
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}; views are {', '.join(VIEWS)}")
    started = datetime.datetime.now(datetime.UTC)
    flags = dict(settings or {})
    try:
        lanes = await backend.start(jobs)
        runner = Runner(backend, lanes, ground_truth(template), out, on_result)
        outcomes = await asyncio.gather(*(VIEWS[name].run(runner, attacks, flags) for name in views))
    finally:
        await backend.stop()
    result = CheckResult(views, attacks, backend.name, started, datetime.datetime.now(datetime.UTC))
    result.outcomes = dict(zip(views, outcomes, strict=True))
    result.results = runner.results
    result.headline = merge_headlines(outcomes, attacks)
    return result
