"""Evidence as a story: one line per thing a role saw, in time order, for a student at a keyboard."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

ROLE_STYLE = {"client": "cyan", "server": "green", "attacker": "magenta"}
STYLE = {
    "refusal": "bold red",
    "internal_error": "bold red",
    "addon_error": "bold red",
    "transfer_executed": "bold yellow",
    "read": "bold magenta",
    "changed": "bold magenta",
    "injected": "bold magenta",
}


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
            return _attacker_sentence(e) if e["role"] == "attacker" else None


def _attacker_sentence(e: dict[str, Any]) -> str | None:
    match e["event"]:
        case "flow_started":
            return f"[{e['attack']}] sees a connection from {e['client']}"
        case "intercepting":
            return f"[{e['attack']}] holds the ClientHello and opens its own handshake with the server"
        case "presenting":
            return f"[{e['attack']}] presents a certificate for {e['certificate']}, issued by {e['issuer']}"
        case "read":
            return f"[{e['attack']}] READS the {e['secret']}: {e['value']} ({e['where']})"
        case "changed":
            return f"[{e['attack']}] CHANGES the {e['what']}: {e['before']} -> {e['after']}"
        case "injected":
            return f"[{e['attack']}] INJECTS {e['what']}"
        case "negotiated":
            return f"[{e['attack']}] sees the server choose {e['suite_chosen']}"
        case "recorded":
            return f"[{e['attack']}] records the session ({e['frames']} frames)"
        case "replay_done":
            return f"[{e['attack']}] the server answered the replay with {e['server_records']} records"
        case "attack_failed":
            by = f" [{e['protection']}]" if e.get("protection") else ""
            return f"[{e['attack']}] fails{by}: {e['reason']}"
        case "addon_error" | "flow_error":
            return f"[{e['attack']}] error: {e['error']}"
        case _:
            return None


def told(events: Iterable[dict[str, Any]]) -> list[tuple[float, dict[str, Any], str]]:
    """The events worth a line, in time order: (milliseconds since the first event, event, sentence)."""
    ordered = sorted(events, key=lambda e: e["ts"])
    if not ordered:
        return []
    start = datetime.fromisoformat(ordered[0]["ts"])
    lines = []
    for event in ordered:
        words = sentence(event)
        if words is not None:
            lines.append(((datetime.fromisoformat(event["ts"]) - start).total_seconds() * 1000, event, words))
    return lines


def styled_line(event: dict[str, Any], words: str, elapsed_ms: float | None = None) -> Text:
    line = Text(f"{elapsed_ms:7.1f} ms  " if elapsed_ms is not None else "", style="dim")
    line.append(f"{event['role']:>8}  ", style=ROLE_STYLE.get(event["role"], ""))
    line.append(words, style=STYLE.get(event["event"], ""))
    return line


def print_timeline(events: Iterable[dict[str, Any]], console: Console) -> None:
    for elapsed, event, words in told(events):
        console.print(styled_line(event, words, elapsed), soft_wrap=True)
