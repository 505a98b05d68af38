"""A run's verdict, computed from what the roles recorded and nothing else.

The checker does not know what an attack is supposed to do. It looks, in every run, for every kind of
breakage the brief names, and compares what the attacker claims with what the client and server saw:

- `secret_read`: an attacker `read` (in the clear, or as the relay) whose value is a real secret: the
  client's password, a transfer the client sent, a balance the client received.
- `recording_decrypted`: the same, read from a recording with a key obtained later.
- `forged_server_accepted`: the client accepted a server key that is not the real server's.
- `transfer_altered`: the server executed a transfer the client never sent.
- `transfer_executed_twice`: the server executed more of a transfer than the client sent, in one session.
- `transfer_replayed_in_new_session`: the same, across sessions opened with the same ClientHello random.
- `message_not_from_server_accepted`: the client accepted a record whose plaintext the server never sent.
- `weaker_suite_negotiated`: the session ran on a weaker suite than the best both sides support.

Verdicts, in order of precedence:

- `error`: the lab itself failed (a role crashed or timed out, an addon or the server hit a bug, or the
  session failed without any protection refusing). Never counted as blocked; breakages found are kept.
- `compromised`: at least one breakage.
- `blocked`: a protection refused (a client or server `refusal`: protection and step from the typed
  error), or the attacker reports the protection that left it empty-handed (an encrypting suite,
  an ECDHE key exchange).
- `unaffected`: the session went through untouched and the attack found nothing to act on (for example
  `downgrade` when the client offers nothing stronger than the legacy suites).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from lab.channel.suites import ALL_SUITES, Suite

VERDICTS: Final = ("compromised", "blocked", "unaffected", "error")
LAB_FAILURES: Final = ("internal_error", "addon_error")

Event = dict[str, Any]


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
    message: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "blocked_by": self.blocked_by,
            "step": self.step,
            "refused_by_role": self.refused_by_role,
            "message": self.message,
            "error": self.error,
            "broken": [{"kind": b.kind, "detail": b.detail} for b in self.breakages],
        }


@dataclass
class RunEvidence:
    """The events of one run, by role, and what the runner itself observed."""

    events: dict[str, list[Event]] = field(default_factory=dict)
    lab_error: str | None = None
    """A runner-level failure: a timeout, a role that died, a control request that failed."""
    client_outcome: str | None = None
    """How the client's session ended, as the client role reported it ('ok', or the error's type)."""

    def of(self, role: str, name: str) -> list[Event]:
        return [e for e in self.events.get(role, []) if e.get("event") == name]


def decide(run: RunEvidence, truth: GroundTruth) -> Verdict:
    breakages = tuple(find_breakages(run, truth))
    lab_failures = [e for role in run.events for e in run.events[role] if e.get("event") in LAB_FAILURES]
    if run.lab_error or lab_failures:
        reason = run.lab_error or "; ".join(f"{e['role']}: {e.get('error')}" for e in lab_failures)
        return Verdict("error", breakages, error=reason)
    if breakages:
        return Verdict("compromised", breakages)
    refusals = sorted(run.of("client", "refusal") + run.of("server", "refusal"), key=lambda e: e["ts"])
    if refusals:
        first = refusals[0]
        return Verdict("blocked", (), first["protection"], first["step"], first["role"], first["message"])
    named = [e for e in run.of("attacker", "attack_failed") if e.get("protection")]
    if named:
        first = named[0]
        return Verdict("blocked", (), first["protection"], first.get("step"), "attacker", first["reason"])
    if run.client_outcome not in (None, "ok"):
        return Verdict(
            "error", error=f"the client's session ended with {run.client_outcome}, yet nothing refused"
        )
    return Verdict("unaffected", message=_why_unaffected(run))


def _why_unaffected(run: RunEvidence) -> str:
    failures = run.of("attacker", "attack_failed")
    return failures[0]["reason"] if failures else "the attack changed nothing the roles could see"


def find_breakages(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    return [
        *_secrets_read(run, truth),
        *_forged_servers(run, truth),
        *_transfers(run),
        *_messages_not_from_server(run),
        *_weaker_suites(run),
    ]


def _transfer_key(to: object, amount: object) -> tuple[str, int]:
    return str(to), int(amount) if isinstance(amount, int) else -1


def _secrets_read(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    sent_transfers = {
        _transfer_key(e.get("to"), e.get("amount"))
        for e in run.of("client", "record_sent")
        if e.get("op") == "transfer"
    }
    balances = {
        e["reply"]["balance"]
        for e in run.of("client", "reply")
        if isinstance(e.get("reply"), dict) and isinstance(e["reply"].get("balance"), int)
    }

    def real(event: Event) -> bool:
        value = event.get("value")
        match event.get("secret"):
            case "password":
                return value == truth.password
            case "transfer":
                return (
                    isinstance(value, dict)
                    and _transfer_key(value.get("to"), value.get("amount")) in sent_transfers
                )
            case "balance":
                return isinstance(value, int) and value in balances
        return False

    breakages = []
    for kind, hows in (
        ("secret_read", ("in_the_clear", "as_the_relay")),
        ("recording_decrypted", ("decrypted_offline",)),
    ):
        reads = [e for e in run.of("attacker", "read") if e.get("how") in hows and real(e)]
        if reads:
            secrets = sorted({e["secret"] for e in reads})
            how = sorted({e["how"].replace("_", " ") for e in reads})
            breakages.append(
                Breakage(kind, f"the attacker read the {', '.join(secrets)} ({', '.join(how)})", tuple(reads))
            )
    return breakages


def _forged_servers(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    forged = [e for e in run.of("client", "session_opened") if e.get("server_key") != truth.server_key]
    if not forged:
        return []
    subjects = sorted({e.get("server_subject", "?") for e in forged})
    return [
        Breakage(
            "forged_server_accepted",
            f"the client accepted a key that is not the server's ({', '.join(subjects)})",
            tuple(forged),
        )
    ]


def _transfers(run: RunEvidence) -> list[Breakage]:
    sent = Counter(
        _transfer_key(e.get("to"), e.get("amount"))
        for e in run.of("client", "record_sent")
        if e.get("op") == "transfer"
    )
    executed = run.of("server", "transfer_executed")
    breakages = []
    altered = [e for e in executed if _transfer_key(e["to_account"], e["amount"]) not in sent]
    if altered:
        what = ", ".join(f"{e['amount']} to {e['to_account']}" for e in altered)
        breakages.append(
            Breakage(
                "transfer_altered", f"the server executed {what}, which the client never sent", tuple(altered)
            )
        )
    randoms = {e["session"]: e.get("client_random") for e in run.of("server", "session_opened")}
    for key, count in Counter(_transfer_key(e["to_account"], e["amount"]) for e in executed).items():
        if key not in sent or count <= sent[key]:
            continue
        copies = tuple(e for e in executed if _transfer_key(e["to_account"], e["amount"]) == key)
        sessions = {e["session"] for e in copies}
        replayed_hello = len(sessions) > 1 and len({randoms.get(s) for s in sessions}) == 1
        kind = "transfer_replayed_in_new_session" if replayed_hello else "transfer_executed_twice"
        where = (
            f"in {len(sessions)} sessions opened with the same ClientHello"
            if replayed_hello
            else "in one session"
        )
        breakages.append(
            Breakage(kind, f"{key[1]} to {key[0]} executed {count} times, sent {sent[key]} ({where})", copies)
        )
    return breakages


def _messages_not_from_server(run: RunEvidence) -> list[Breakage]:
    from_server = {e["plaintext"] for e in run.of("server", "record_sent")}
    foreign = [e for e in run.of("client", "record_received") if e["plaintext"] not in from_server]
    if not foreign:
        return []
    own = {e["plaintext"] for e in run.of("client", "record_sent")}
    whose = " (its own, sent back)" if any(e["plaintext"] in own for e in foreign) else ""
    return [
        Breakage(
            "message_not_from_server_accepted",
            f"the client accepted {len(foreign)} record(s) the server never sent{whose}",
            tuple(foreign),
        )
    ]


def _weaker_suites(run: RunEvidence) -> list[Breakage]:
    supported = {e.get("client_random"): e.get("supported", []) for e in run.of("server", "session_opened")}
    breakages = []
    for session in run.of("client", "session_opened"):
        server_side = supported.get(session.get("client_random"))
        if server_side is None:
            continue  # the client's hello never reached the server as such (a relay answered it)
        known = {s.name for s in ALL_SUITES}
        common = set(session.get("offered", [])) & set(server_side) & known
        if not common or session.get("suite") not in known:
            continue
        best = max(Suite.from_name(name) for name in common)
        used = Suite.from_name(session["suite"])
        if used < best:
            breakages.append(
                Breakage(
                    "weaker_suite_negotiated",
                    f"the session ran on {used.name}; both sides support {best.name}",
                    (session,),
                )
            )
    return breakages
