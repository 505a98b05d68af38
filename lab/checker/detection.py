"""What the client's ARP detector saw in a run, tied to the run's outcome (docs/arp.md): the first
detection, and how long before (or after) the moment the attack won or was stopped. Detection is
evidence only: a run is never `blocked` by it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from lab import events
from lab.events import Event
from lab.verdict import Verdict


def _moment(event: Event) -> datetime.datetime:
    return datetime.datetime.fromisoformat(event.ts)


def _outcome(recorded: Mapping[str, list[Event]], verdict: Verdict) -> tuple[Event, str] | None:
    """The event at which the run was decided, and what happened then."""
    if verdict.breakages:
        shown = [e for b in verdict.breakages for e in b.events]
        if shown:
            return min(shown, key=_moment), verdict.breakages[0].detail
    refusals = [e for role in recorded for e in recorded[role] if isinstance(e, events.Refusal)]
    if refusals:
        first = min(refusals, key=_moment)
        return first, f"{first.role} refused, by {first.protection}"
    return None


def detection(recorded: Mapping[str, list[Event]], verdict: Verdict) -> dict[str, Any] | None:
    """None for a run without ARP positioning."""
    if not any(isinstance(e, events.ArpPoisoning) for e in recorded.get("attacker", [])):
        return None
    seen = [e for e in recorded.get("client", []) if isinstance(e, events.ArpDetected)]
    if not seen:
        return {"detected": False, "kinds": [], "ms_before_outcome": None, "text": "no detection"}
    first = min(seen, key=_moment)
    kinds = sorted({e.kind for e in seen})
    outcome = _outcome(recorded, verdict)
    if outcome is None:
        text = f"poisoning detected ({', '.join(kinds)}); detection alone does not block"
        return {"detected": True, "kinds": kinds, "ms_before_outcome": None, "text": text}
    decided, what = outcome
    ms = round((_moment(decided) - _moment(first)).total_seconds() * 1000, 1)
    when = f"{ms:g} ms before" if ms >= 0 else f"{-ms:g} ms after"
    text = f"poisoning detected {when} the outcome ({what}); detection alone does not block"
    return {"detected": True, "kinds": kinds, "ms_before_outcome": ms, "text": text}
