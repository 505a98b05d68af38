"""The attacker's evidence and the options every attack addon shares.

Every addon writes to `<lab_state_dir>/evidence/attacker.jsonl` what it read (secrets, and where they
appeared), what it changed, what it injected, and what failed for it and why. A failure may name the
protection the attacker saw in its way, when the wire shows it (an encrypting suite, an ECDHE key
exchange, the client's alert); the checker still decides verdicts from all roles' evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mitmproxy import ctx, tcp
from mitmproxy.addonmanager import Loader

from lab.channel.protections import PROTECTION_IDS
from lab.evidence import EvidenceLog
from lab.mitm.wire import flow_wire
from lab.state import StateDir

READ_HOW = ("in_the_clear", "as_the_relay", "decrypted_offline")
"""How an attacker can come to read a secret: on the wire, as a man in the middle holding both legs'
keys, or from a recording with a key obtained later."""


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
    def __init__(self, attack: str) -> None:
        self.attack = attack

    def record(self, flow: tcp.TCPFlow | None, event: str, **fields: Any) -> None:
        context = flow_wire(flow).view.describe() if flow is not None else {}
        EvidenceLog(state_dir().evidence_path("attacker"), "attacker").record(
            event, attack=self.attack, **context, **fields
        )

    def read(self, flow: tcp.TCPFlow, secret: str, value: object, where: str, how: str) -> None:
        """The attacker read a secret (a password, a balance, a transfer). `how`: one of READ_HOW."""
        if how not in READ_HOW:
            raise ValueError(f"how must be one of {READ_HOW}")
        self.record(flow, "read", secret=secret, value=value, where=where, how=how)

    def changed(self, flow: tcp.TCPFlow, what: str, before: object, after: object) -> None:
        self.record(flow, "changed", what=what, before=before, after=after)

    def injected(self, flow: tcp.TCPFlow, what: str, **details: Any) -> None:
        self.record(flow, "injected", what=what, **details)

    def failed(
        self, flow: tcp.TCPFlow | None, reason: str, *, protection: str | None = None, step: str | None = None
    ) -> None:
        """The attack did not get what it wanted; `protection` when the wire shows what stood in the way."""
        if protection is not None and protection not in PROTECTION_IDS:
            raise ValueError(f"{protection!r} is not a protection id; they are {', '.join(PROTECTION_IDS)}")
        self.record(flow, "attack_failed", reason=reason, protection=protection, step=step)


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
