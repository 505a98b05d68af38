"""clients: real TLS, every real client against every TLS attack, in the client's own words (docs/tls.md).

One run per cell (an attack and a client), plus one per client with no attack: a client that does not
get through with nobody in the way shows as `error` in every cell of its column, never as `blocked`.
The ssh view (`views/ssh.py`) is the same table for the SSH stack's clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lab import events, system
from lab.checker.views import Placement, ViewOutcome
from lab.stacks import STACKS, Client
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
    catalog: ClassVar[Mapping[str, Client]] = STACKS[REAL_TLS].clients
    """The clients of its stack, by column id: each with its `summary` and `programs`."""

    def __init__(self, victims: Sequence[str] | None = None) -> None:
        self.victims = tuple(self.catalog if victims is None else victims)
        """The columns: client ids, or PROBE and a command (`mitmlab probe`)."""

    @property
    def programs(self) -> tuple[str, ...]:
        """The system programs its clients run (`lab.system`); a probed program is the user's own."""
        known = (self.catalog[v] for v in self.victims if not v.startswith(PROBE))
        return tuple(dict.fromkeys(p for client in known for p in client.programs))

    @staticmethod
    def words(run: RunResult) -> str | None:
        """The client's own words in a run, as the lab read them."""
        visited = [e for e in run.events.get("client", []) if isinstance(e, events.Visited)]
        return visited[-1].words if visited else None

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        placements = [
            Placement(self.name, attack or NO_ATTACK, victim, Scenario.visit(self.stack, attack, victim))
            for attack in (None, *attacks)
            for victim in self.victims
        ]
        results = await asyncio.gather(*(runner.run(p.scenario) for p in placements))
        by_cell = {(p.attack, p.label): r for p, r in zip(placements, results, strict=True)}
        cells = [
            self._cell(attack, victim, by_cell[(attack, victim)], by_cell[(NO_ATTACK, victim)])
            for attack in (NO_ATTACK, *attacks)
            for victim in self.victims
        ]
        columns = [self._column(victim) for victim in self.victims]
        return ViewOutcome(placements, {"columns": columns, "rows": [NO_ATTACK, *attacks], "cells": cells})

    def _column(self, victim: str) -> dict[str, Any]:
        if victim.startswith(PROBE):
            command = victim.removeprefix(PROBE)
            return {"id": victim, "summary": f"your program: {command}", "installed": True}
        client = self.catalog[victim]
        return {"id": victim, "summary": client.summary, "installed": not system.missing(client.programs)}

    def _cell(self, attack: str, victim: str, run: RunResult, baseline: RunResult) -> dict[str, Any]:
        return _cell_of(attack, victim, run, baseline, self.words(run) or run.verdict.error or "")


def _cell_of(attack: str, victim: str, run: RunResult, baseline: RunResult, words: str) -> dict[str, Any]:
    """One cell of the table: the run's verdict, unless the client fails with no attack at all."""
    verdict = run.verdict
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
