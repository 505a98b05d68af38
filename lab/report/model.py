"""The report's data: one JSON-ready dict built from a check; every writer renders from it.

The schema is versioned and documented in docs/report-format.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from lab import system
from lab.attacks import ATTACKS
from lab.channel.protections import PROTECTION_IDS
from lab.checker.check import CheckResult
from lab.checker.detection import detection
from lab.checker.runner import RunResult
from lab.checker.views import Placement
from lab.events import SCHEMA_VERSION as EVIDENCE_SCHEMA
from lab.events import Event, to_dict
from lab.narrate import told
from lab.stacks import PROTECTIONS_BY_ID, STACKS, attacks_on, stacks_of
from lab.verdict import VERDICTS

SCHEMA: Final = "mitm-lab/report"
VERSION: Final = 5


def build(check: CheckResult) -> dict[str, Any]:
    scenarios = [
        _scenario(p, check.results[p.scenario.id]) for p in check.placements if p.scenario.id in check.results
    ]
    verdicts = Counter(check.results[sid].verdict.verdict for sid in check.results)
    not_installed = sorted({p for result in check.results.values() for p in result.verdict.missing})
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "evidence_schema": EVIDENCE_SCHEMA,
        "created": check.finished.isoformat(timespec="seconds"),
        "backend": check.backend,
        "views": list(check.views),
        "attacks": list(check.attacks),
        "stack_attacks": {stack: list(attacks_on(stack, check.attacks)) for stack in STACKS},
        "protections": _columns(check),
        "summary": {
            "runs": len(check.results),
            "placements": len(scenarios),
            **{verdict: verdicts.get(verdict, 0) for verdict in VERDICTS},
            "duration_s": round(check.duration_s, 2),
            "captured": sum(result.capture is not None for result in check.results.values()),
            "capture_notes": sorted({r.capture_note for r in check.results.values() if r.capture_note}),
            "not_installed": not_installed,
            "install": system.install_line(not_installed),
        },
        "headline": {a: {p: cell.value for p, cell in row.items()} for a, row in check.headline.items()},
        "headline_runs": {
            a: {p: list(cell.runs) for p, cell in row.items()} for a, row in check.headline.items()
        },
        "sections": {name: outcome.section for name, outcome in check.outcomes.items()},
        "clients": list(check.outcomes["clients"].section["cells"]) if "clients" in check.outcomes else [],
        "attack_info": {
            a: {
                "summary": ATTACKS[a].summary,
                "evidence": ATTACKS[a].evidence,
                "stacks": list(stacks_of(a)),
            }
            for a in check.attacks
        },
        "stacks": {stack.id: stack.summary for stack in STACKS.values()},
        "protection_info": {p.id: p.doc for p in PROTECTIONS_BY_ID.values()},
        "scenarios": scenarios,
    }


def _columns(check: CheckResult) -> list[str]:
    """The headline's protections: the lab channel's, and the link layer's where a view told of them."""
    first = next(iter(check.headline.values()), None)
    return list(first) if first else list(PROTECTION_IDS)


def _scenario(placement: Placement, run: RunResult) -> dict[str, Any]:
    scenario, verdict = run.scenario, run.verdict
    return {
        "id": scenario.id,
        "view": placement.view,
        "label": placement.label,
        "attack": scenario.attack,
        "profile": scenario.profile,
        "protections": {"client": scenario.client.as_dict(), "server": scenario.server.as_dict()},
        "stack": scenario.stack,
        "victim": scenario.victim,
        "positioning": scenario.positioning,
        "static_arp": scenario.static_arp,
        "detection": detection(run.events, verdict),
        "pin_first": scenario.pin_first,
        **verdict.to_json(),
        "client_outcome": run.client_outcome,
        "duration_ms": round(run.duration_ms, 1),
        "evidence": {
            "dir": run.evidence_dir,
            "files": [f"{run.evidence_dir}/{role}.jsonl" for role in run.recorded],
            "capture": run.capture,
            "capture_note": run.capture_note,
            "diagram": run.diagram,
            "no_diagram": run.no_diagram,
            "lab_keylog": run.lab_keylog,
            "broken": [
                {"kind": b.kind, "detail": b.detail, "events": [_brief(e) for e in b.events]}
                for b in verdict.breakages
            ],
            "timeline": timeline(run.events),
            "pin_session": timeline(run.pre_events) if scenario.pin_first else [],
        },
    }


def timeline(recorded: dict[str, list[Event]]) -> list[dict[str, Any]]:
    """Every event that says something, in time order, with milliseconds from the first."""
    merged = (e for role in recorded for e in recorded[role])
    return [
        {"ms": round(ms, 1), "role": e.role, "event": e.name, "text": words} for ms, e, words in told(merged)
    ]


def _brief(event: Event) -> dict[str, Any]:
    return {k: v for k, v in to_dict(event).items() if k != "ts"}
