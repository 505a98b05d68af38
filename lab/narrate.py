"""Evidence as a story: one line per thing a role saw, in time order, for a student at a keyboard."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

ROLE_STYLE = {"client": "cyan", "server": "green", "attacker": "magenta"}


def sentence(event: dict[str, Any]) -> str | None:
    """What one evidence event says, in words; None for events not worth a line."""
    e = event
    match e["event"]:
        case "listening":
            return f"listens on {e['host']}:{e['port']}"
        case "connecting":
            return f"dials {e['server_name']} at {e['host']}:{e['port']}"
        case "session_opened" if e["role"] == "client":
            checks = ", ".join(e["checks"]) or "none"
            pin = f"; key pin {e['pin']}" if e.get("pin") else ""
            return f"accepts {e['server_subject']} (checks passed: {checks}{pin}); suite {e['suite']}"
        case "session_opened":
            return f"opens session {e['session']} with {e['peer']}; suite {e['suite']}"
        case "record_sent" if e.get("op"):
            what = f"transfer {e['amount']} to {e['to']}" if e["op"] == "transfer" else e["op"]
            return f"sends {what} (record #{e['seq']})"
        case "request":
            outcome = f"declined: {e['error']}" if e.get("error") else "ok"
            return f"receives {e['op'] or 'an unreadable message'} (record #{e['seq']}): {outcome}"
        case "transfer_executed":
            return (
                f"EXECUTES transfer #{e['transfer']}: {e['from_account']} -> {e['to_account']} {e['amount']} "
                f"(session {e['session']}, record #{e['seq']})"
            )
        case "reply":
            outcome = "ok" if e["reply"]["ok"] else "declined"
            fields = "".join(f", {k} {v}" for k, v in e["reply"].items() if k != "ok")
            return f"gets the answer to {e['op']}: {outcome}{fields}"
        case "reply_rejected":
            return f"cannot read the answer to {e['op']}: {e['reason']}"
        case "refusal":
            return f"REFUSES, by {e['protection']} at {e['step']}: {e['message']}"
        case "peer_refused":
            by = f"by {e['protection']} " if e.get("protection") else ""
            return f"is told the peer refused {by}at {e['step']}: {e['message']}"
        case "protocol_error":
            return f"drops the connection at {e['step']}: {e['message']}"
        case "internal_error":
            return f"lab error: {e['error']}"
        case _:
            return None


def timeline(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: e["ts"])


def print_timeline(events: Iterable[dict[str, Any]], console: Console) -> None:
    ordered = timeline(events)
    if not ordered:
        return
    start = datetime.fromisoformat(ordered[0]["ts"])
    for event in ordered:
        words = sentence(event)
        if words is None:
            continue
        elapsed = (datetime.fromisoformat(event["ts"]) - start).total_seconds() * 1000
        line = Text(f"{elapsed:7.1f} ms  ", style="dim")
        line.append(f"{event['role']:>8}  ", style=ROLE_STYLE.get(event["role"], ""))
        style = (
            "bold red"
            if event["event"] in ("refusal", "internal_error")
            else ("bold yellow" if event["event"] == "transfer_executed" else "")
        )
        line.append(words, style=style)
        console.print(line, soft_wrap=True)
