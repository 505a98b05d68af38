"""A whole lab on loopback for one test: the bank server, the attacker (real mitmproxy with one attack
addon) in front of it, and a client session through the attacker. Returns what every role recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lab.channel.protections import Protections
from lab.checker.runner import ground_truth
from lab.events import Event, to_dict
from lab.evidence import evidence_lines, parse_lines
from lab.roles.attacker import AttackerRole
from lab.roles.client import Command, SessionResult, run_session
from lab.roles.server import BankServer
from lab.stacks import EVERY_PROTECTION
from lab.stacks.lab_channel import decide
from lab.state import StateDir
from lab.verdict import RunEvidence, Verdict

SESSION = (Command("transfer", to="bob", amount=100), Command("balance"))


def read_evidence(path: Path, role: str) -> list[Event]:
    """A role's evidence file, every line valid; raises the `EvidenceError` of the first that is not."""
    parsed, bad = parse_lines(role, evidence_lines(path), EVERY_PROTECTION)
    if bad:
        raise bad[0]
    return parsed


@dataclass
class Outcome:
    state: StateDir
    result: SessionResult | None
    client_error: Exception | None
    evidence: dict[str, list[Event]] = field(default_factory=dict)

    def events(self, role: str, name: str) -> list[dict[str, Any]]:
        """The role's events called `name`, as the JSON objects their lines hold."""
        return [to_dict(e) for e in self.evidence[role] if e.name == name]

    def verdict(self) -> Verdict:
        """The checker's verdict on this session's evidence."""
        outcome = "ok" if self.client_error is None else type(self.client_error).__name__
        return decide(RunEvidence(self.evidence, client_outcome=outcome), ground_truth(self.state))

    def read(self, secret: str) -> list[Any]:
        """The values of `secret` that the attacker reports having read."""
        return [e["value"] for e in self.events("attacker", "read") if e["secret"] == secret]


@contextlib.asynccontextmanager
async def bank_behind_attacker(
    state: StateDir, protections: Protections
) -> AsyncIterator[tuple[AttackerRole, int, int]]:
    """The bank server, and the attacker in front of it, on loopback: the attacker, its port and the
    server's."""
    server = BankServer(state, protections)
    server_port = await server.start("127.0.0.1", 0)
    serving = asyncio.create_task(server.serve_forever())
    attacker = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", server_port))
    try:
        yield attacker, await attacker.start(), server_port
    finally:
        await attacker.stop()
        serving.cancel()
        await server.stop()


async def attack_session(
    state: StateDir,
    attack_id: str | None,
    protections: Protections,
    *,
    server_protections: Protections | None = None,
    settings: dict[str, Any] | None = None,
) -> Outcome:
    async with bank_behind_attacker(state, server_protections or protections) as (attacker, port, _):
        attacker.switch(attack_id, settings)
        result, error = None, None
        try:
            result = await run_session(state, "127.0.0.1", port, protections, list(SESSION))
        except Exception as exc:  # the outcome records it; the test decides whether it was expected
            error = exc
        await attacker.idle()
    evidence = {
        role: read_evidence(state.evidence_path(role), role) for role in ("client", "server", "attacker")
    }
    return Outcome(state, result, error, evidence)


def evidence_dicts(state: StateDir, role: str) -> list[dict[str, Any]]:
    """A role's evidence file, every line validated, as the JSON objects the lines hold."""
    return [to_dict(e) for e in read_evidence(state.evidence_path(role), role)]


def run_attack(state: StateDir, attack_id: str | None, protections: Protections, **kwargs: Any) -> Outcome:
    return asyncio.run(attack_session(state, attack_id, protections, **kwargs))


VERDICTS_BEFORE_STACKS: Final = Path(__file__).parent / "data" / "verdicts-before-stacks.json"
"""Every run's verdict in a whole check made before the stacks became plug-ins (`lab.stacks`)."""


def verdicts_unchanged_since_before_stacks(report: dict[str, Any]) -> int:
    """How many of the report's runs were compared with the check made before the stacks became
    plug-ins; asserts each has the verdict, the protection, the step and the breakages it had then."""
    recorded = json.loads(VERDICTS_BEFORE_STACKS.read_text())["runs"]
    now = {
        s["id"]: {
            "verdict": s["verdict"],
            "blocked_by": s["blocked_by"],
            "step": s["step"],
            "broken": sorted({b["kind"] for b in s["broken"]}),
        }
        for s in report["scenarios"]
    }
    assert set(now) <= set(recorded), (
        f"runs the earlier check did not make: {sorted(set(now) - set(recorded))}"
    )
    assert now == {sid: recorded[sid] for sid in now}
    return len(now)
