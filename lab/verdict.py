"""What a run's verdict is, on every stack: the words, the breakages that make one `compromised`, the
evidence a stack's rules read, and the link layer's rule, which comes first on every stack.

Each stack computes its runs' verdicts from what the roles recorded and nothing else (`lab.stacks`):
the checker does not know what an attack is supposed to do. Verdicts, in order of precedence:

- `error`: the lab itself failed (a role crashed or timed out, an addon or the server hit a bug, or the
  session failed without any protection refusing). Never counted as blocked; breakages found are kept.
- `compromised`: at least one breakage.
- `blocked`: a protection refused, or the wire shows which protection left the attack empty-handed;
  through ARP positioning (docs/arp.md), a client whose entry for the server never held the attacker's
  MAC was never on the attacker's path: `blocked` by `static_arp` when that entry was its own permanent
  one, an `error` otherwise (the poisoning did not take).
- `unaffected`: the session went through untouched and the attack found nothing to act on.
- `not-run-here`: nothing ran, because a program the run needs is not installed on this machine. It says
  nothing of the attack nor of the lab: counted apart, with the line that installs what is missing
  (`lab.system`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from lab import events, system
from lab.events import Event

NOT_RUN_HERE: Final = "not-run-here"
VERDICTS: Final = ("compromised", "blocked", "unaffected", "error", NOT_RUN_HERE)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class GroundTruth:
    """What the checker knows independently of the attacker: the real secrets and keys."""

    password: str
    server_key: str
    """The SHA-256 fingerprint of the real server key, as the client's evidence writes it."""


@dataclass(frozen=True)
class Breakage:
    kind: str
    detail: str
    events: tuple[Event, ...]
    """The evidence lines that show it."""


@dataclass(frozen=True)
class Verdict:
    verdict: str
    breakages: tuple[Breakage, ...] = ()
    blocked_by: str | None = None
    step: str | None = None
    refused_by_role: str | None = None
    """The role whose refusal blocked it; None when no role refused (the wire shows what did)."""
    message: str | None = None
    error: str | None = None
    missing: tuple[str, ...] = ()
    """`not-run-here`: the programs it needs that are not installed here."""

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "blocked_by": self.blocked_by,
            "step": self.step,
            "refused_by_role": self.refused_by_role,
            "message": self.message,
            "error": self.error,
            "missing": list(self.missing),
            "broken": [{"kind": b.kind, "detail": b.detail} for b in self.breakages],
        }


@dataclass
class RunEvidence:
    """The events of one run, by role, and what the runner itself observed."""

    events: dict[str, list[Event]] = field(default_factory=dict)
    lab_error: str | None = None
    """A runner-level failure: a timeout, a role that died, evidence that did not validate."""
    client_outcome: str | None = None
    """How the client's session ended, as the client role reported it ('ok', or the error's type)."""
    attacked: bool = True
    """False for a run with no attack (the attacker only relays)."""

    def of(self, role: str, kind: type[E]) -> list[E]:
        return [e for e in self.events.get(role, []) if isinstance(e, kind)]

    def lab_failure(self) -> str | None:
        """Why the lab itself failed in this run (the runner's account, or a role's `LAB_FAILURES`)."""
        failures = [
            e for role in self.events for e in self.events[role] if isinstance(e, events.LAB_FAILURES)
        ]
        if self.lab_error or failures:
            return self.lab_error or "; ".join(f"{e.role}: {getattr(e, 'error', '')}" for e in failures)
        return None


def first_rules(run: RunEvidence, breakages: tuple[Breakage, ...]) -> Verdict | None:
    """The rules that come before a stack's own: a lab failure is an `error` (with the breakages found);
    through ARP, a client that never was on the attacker's path (`not_on_the_path`), unless something
    broke anyway."""
    failure = run.lab_failure()
    if failure is not None:
        return Verdict("error", breakages, error=failure)
    return None if breakages else not_on_the_path(run)


def not_run_here(programs: tuple[str, ...]) -> Verdict:
    """A run that did not run because `programs` are not installed here, with what installs them."""
    line = system.install_line(programs)
    why = f"not installed here: {', '.join(programs)}" + (f" (Debian: {line})" if line else "")
    return Verdict(NOT_RUN_HERE, message=why, missing=programs)


def not_on_the_path(run: RunEvidence) -> Verdict | None:
    """ARP positioning (docs/arp.md) that did not take: the client's entry for the server never held
    the attacker's MAC. Blocked by static_arp when the entry was the client's own permanent one; an
    `error` otherwise (a cold cache: the lab failed to get the attacker in, no protection did)."""
    poisoning = run.of("attacker", events.ArpPoisoning)
    if not poisoning:
        return None
    attacker_mac = poisoning[0].attacker_mac
    during = [e for e in run.of("client", events.ArpEntry) if e.moment == "during"]
    if during and during[0].mac == attacker_mac:
        return None
    held = during[0].mac if during else None
    pinned = run.of("client", events.ArpPinned)
    if pinned and held == pinned[0].mac and during[0].permanent:
        return Verdict(
            "blocked",
            (),
            "static_arp",
            "arp",
            "client",
            f"the client's permanent entry for {pinned[0].ip} stayed on {held}: the attacker's ARP "
            "replies moved nothing, and it never got on the client's path",
        )
    where = f"on {held}, the server's MAC" if held else "empty: a cold cache (the client never talked)"
    return Verdict("error", error=f"the ARP poisoning did not take: the client's entry stayed {where}")
