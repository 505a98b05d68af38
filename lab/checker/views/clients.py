"""clients: real TLS, every real client against every TLS attack, in the client's own words (docs/tls.md).

One run per cell (an attack and a client), plus one per client with no attack: a client that does not
get through with nobody in the way shows as `error` in every cell of its column, never as `blocked`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lab import events, system
from lab.checker.views import Placement, ViewOutcome
from lab.clients.adapters import CLIENTS
from lab.stacks.real_tls import PROBE, REAL_TLS
from lab.stacks.scenario import Scenario
from lab.verdict import NOT_RUN_HERE

if TYPE_CHECKING:
    from lab.checker.runner import Runner, RunResult

NO_ATTACK = "none"


class Clients:
    name: ClassVar[str] = "clients"
    order: ClassVar[int] = 40
    stack: ClassVar[str] = REAL_TLS
    summary: ClassVar[str] = "real TLS: each real client against each TLS attack, in its own words"

    flags: ClassVar[Mapping[str, str]] = {}
    needs_lab_network: ClassVar[bool] = False

    def __init__(self, victims: Sequence[str] = tuple(CLIENTS)) -> None:
        self.victims = tuple(victims)
        """The columns: client ids, or PROBE and a command (`mitmlab probe`)."""

    @property
    def programs(self) -> tuple[str, ...]:
        """The system programs its clients run (`lab.system`); a probed program is the user's own."""
        return tuple(
            dict.fromkeys(p for v in self.victims if not v.startswith(PROBE) for p in CLIENTS[v].programs)
        )

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        placements = [
            Placement(self.name, attack or NO_ATTACK, victim, Scenario.visit(REAL_TLS, attack, victim))
            for attack in (None, *attacks)
            for victim in self.victims
        ]
        results = await asyncio.gather(*(runner.run(p.scenario) for p in placements))
        by_cell = {(p.attack, p.label): r for p, r in zip(placements, results, strict=True)}
        cells = [
            _cell(attack, victim, by_cell[(attack, victim)], by_cell[(NO_ATTACK, victim)])
            for attack in (NO_ATTACK, *attacks)
            for victim in self.victims
        ]
        columns = [_column(victim) for victim in self.victims]
        return ViewOutcome(placements, {"columns": columns, "rows": [NO_ATTACK, *attacks], "cells": cells})


def _column(victim: str) -> dict[str, Any]:
    if victim.startswith(PROBE):
        command = victim.removeprefix(PROBE)
        return {"id": victim, "summary": f"your program: {command}", "installed": True}
    adapter = CLIENTS[victim]
    installed = not system.missing(adapter.programs)
    return {"id": victim, "summary": adapter.summary, "installed": installed}


def _cell(attack: str, victim: str, run: RunResult, baseline: RunResult) -> dict[str, Any]:
    """One cell of the table: the run's verdict, unless the client fails with no attack at all."""
    verdict = run.verdict
    visited = [e for e in run.events.get("client", []) if isinstance(e, events.Visited)]
    words = visited[-1].words if visited else (verdict.error or "")
    cell = {
        "client": victim,
        "attack": attack,
        "verdict": verdict.verdict,
        "protection": verdict.blocked_by,
        "words": words,
        "evidence": run.evidence_dir,
        "run": run.scenario.id,
        "why": verdict.error or "; ".join(b.detail for b in verdict.breakages) or verdict.message or "",
    }
    if attack != NO_ATTACK and verdict.verdict != NOT_RUN_HERE and baseline.verdict.verdict != "unaffected":
        baseline_why = baseline.verdict.error or baseline.verdict.verdict
        cell.update(verdict="error", protection=None, why=f"without an attacker too: {baseline_why}")
    return cell


VIEW = Clients()
