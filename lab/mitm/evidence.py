"""The attacker's evidence and the options every attack addon shares.

Every addon writes to `<lab_state_dir>/evidence/attacker.jsonl` what it read (secrets, and where they
appeared), what it changed, what it injected, and what failed for it and why, as the events of
`lab.events`. The checker decides verdicts from all roles' evidence and takes no protection from the
attacker's word.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from mitmproxy import ctx, http, tcp
from mitmproxy.addonmanager import Loader

from lab import events
from lab.evidence import EvidenceLog
from lab.mitm.wire import flow_wire
from lab.state import StateDir


def declare_common_options(loader: Loader) -> None:
    loader.add_option(
        "lab_state_dir",
        str,
        "state",
        "The lab's state directory: where the attacker's certificates are and its evidence goes.",
    )


def state_dir() -> StateDir:
    return StateDir(Path(ctx.options.lab_state_dir))


class AttackEvidence:
    """The attacker's evidence log, stamping every event with the attack and the flow it belongs to."""

    def __init__(self, attack: str) -> None:
        self.attack = attack

    def record(self, flow: tcp.TCPFlow | None, event: events.AttackerEvent) -> None:
        context = flow_wire(flow).view.describe() if flow is not None else {}
        stamped = msgspec.structs.replace(event, attack=self.attack, **context)
        EvidenceLog(state_dir().evidence_path("attacker"), "attacker").record(stamped)

    def record_web(self, flow: http.HTTPFlow | None, event: events.AttackerEvent) -> None:
        """An event of an attack on the real-TLS stack (no lab-channel session to describe)."""
        self.record(None, event)

    def read(self, flow: tcp.TCPFlow, secret: str, value: object, where: str, how: events.ReadHow) -> None:
        """The attacker read a secret (a password, a balance, a transfer)."""
        self.record(flow, events.Read(secret=secret, value=value, where=where, how=how))

    def changed(self, flow: tcp.TCPFlow, what: str, before: object, after: object) -> None:
        self.record(flow, events.Changed(what=what, before=before, after=after))

    def injected(
        self, flow: tcp.TCPFlow, what: str, *, frames: int | None = None, record: int | None = None
    ) -> None:
        self.record(flow, events.Injected(what=what, frames=frames, record=record))

    def failed(self, flow: tcp.TCPFlow | None, reason: str, *, step: str | None = None) -> None:
        """The attack did not get what it wanted, in the attacker's words (verdicts do not rest on it)."""
        self.record(flow, events.AttackFailed(reason=reason, step=step))

    def captured(self, flow: tcp.TCPFlow, records: list[tuple[bool, bytes]]) -> None:
        """A passive attacker's capture: every application record's body, as it passed."""
        captured = [events.CapturedRecord(from_client=c, body=body.hex()) for c, body in records]
        self.record(flow, events.Captured(records=captured))

    def error(self, flow: tcp.TCPFlow | None, error: BaseException) -> None:
        """The addon's own bug: the run becomes an `error`."""
        self.record(flow, events.AddonError(error=f"{type(error).__name__}: {error}"))


def secrets_in(plaintext: bytes) -> list[tuple[str, object]]:
    """What a bank message gives away to whoever reads it: (kind, value) pairs."""
    try:
        message = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []
    if not isinstance(message, dict):
        return []
    found: list[tuple[str, object]] = []
    if message.get("op") == "login":
        found += [("user", message.get("user")), ("password", message.get("password"))]
    elif message.get("op") == "transfer":
        found.append(("transfer", {"to": message.get("to"), "amount": message.get("amount")}))
    if "balance" in message:
        found.append(("balance", message["balance"]))
    return found
