"""Evidence as a story: one line per thing a role saw, in time order, for a student at a keyboard."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePath

from rich.console import Console
from rich.text import Text

from lab import events
from lab.events import Event

ROLE_STYLE = {"client": "cyan", "server": "green", "attacker": "magenta"}
STYLE = {
    "refusal": "bold red",
    "internal_error": "bold red",
    "addon_error": "bold red",
    "transfer_executed": "bold yellow",
    "read": "bold magenta",
    "changed": "bold magenta",
    "injected": "bold magenta",
    "arp_poisoning": "bold magenta",
    "arp_detected": "bold yellow",
    "arp_pinned": "bold green",
}


def sentence(event: Event) -> str | None:
    """What one evidence event says, in words; None for events not worth a line. An event that carries
    its own sentence (`said`) says it."""
    said = getattr(event, "said", None)
    if callable(said):
        return str(said())
    match event:
        case events.Listening(host=host, port=port):
            return f"listens on {host}:{port}"
        case events.Connecting():
            return f"dials {event.server_name} at {event.host}:{event.port}"
        case events.ClientSessionOpened():
            checks = ", ".join(event.checks) or "none"
            pin = f"; key pin {event.pin}" if event.pin else ""
            return f"accepts {event.server_subject} (checks passed: {checks}{pin}); suite {event.suite}"
        case events.ServerSessionOpened():
            return f"opens session {event.session} with {event.peer}; suite {event.suite}"
        case events.ClientRecordSent():
            what = f"transfer {event.amount} to {event.to}" if event.op == "transfer" else event.op
            return f"sends {what} (record #{event.seq})"
        case events.Request():
            outcome = f"declined: {event.error}" if event.error else "ok"
            return f"receives {event.op or 'an unreadable message'} (record #{event.seq}): {outcome}"
        case events.TransferExecuted():
            return (
                f"EXECUTES transfer #{event.transfer}: {event.from_account} -> {event.to} {event.amount} "
                f"(session {event.session}, record #{event.seq})"
            )
        case events.Reply():
            outcome = "ok" if event.reply.get("ok") else "declined"
            fields = "".join(f", {k} {v}" for k, v in event.reply.items() if k != "ok")
            return f"gets the answer to {event.op}: {outcome}{fields}"
        case events.ReplyUnreadable():
            return f"cannot read the answer to {event.op}: {event.reason}"
        case events.Refusal():
            return f"REFUSES, by {event.protection} at {event.step}: {event.message}"
        case events.PeerRefused():
            by = f"by {event.protection} " if event.protection else ""
            return f"is told the peer refused {by}at {event.step}: {event.message}"
        case events.ProtocolError():
            return f"drops the connection at {event.step}: {event.message}"
        case events.InternalError():
            return f"lab error: {event.error}"
        case events.ArpEntry(mac=None):
            return f"({event.moment}) has no ARP entry for {event.ip}: a cold cache"
        case events.ArpEntry():
            permanent = ", permanent" if event.permanent else ""
            return f"({event.moment}) its ARP cache has {event.ip} at {event.mac}{permanent}"
        case events.ArpPinned():
            return f"PINS {event.ip} at {event.mac} (static_arp: a permanent ARP entry)"
        case events.ArpDetected(kind="moved"):
            return f"NOTICES {event.ip} move from {event.before} to {event.mac} (detection only)"
        case events.ArpDetected():
            return f"NOTICES {event.ip} and {event.before} share the MAC {event.mac} (detection only)"
        case events.HopsMeasured(ttl=None):
            return f"({event.moment}) gets no answer to an ICMP echo to {event.ip}"
        case events.HopsMeasured():
            return f"({event.moment}) the server answers an ICMP echo with TTL {event.ttl}"
        case events.ProgramRan(exit_code=None):
            return f"{_command(event)} does not end within its time: killed after {event.duration_ms:.0f} ms"
        case events.ProgramRan():
            return f"{_command(event)} ends with exit code {event.exit_code} after {event.duration_ms:.0f} ms"
        case events.Visited(missing=[_, *_]):
            return f"{event.client} cannot run here: {', '.join(event.missing)} not installed"
        case events.Visited():
            protection = f" (the lab reads it as {event.protection})" if event.protection else ""
            return f"{event.client}, in its own words: {event.words}{protection}"
        case events.WebListening():
            return f"serves HTTPS on {event.host}:{event.https}, plain HTTP on port {event.http}"
        case events.WebRequest():
            over = "TLS" if event.tls else "plain HTTP"
            return f"answers {event.method} {event.path} over {over}: HTTP {event.status}"
        case events.WebLogin():
            return f"accepts {event.user}'s password and issues a session cookie"
        case events.AttackerEvent():
            words = _attacker_sentence(event)
            if words is None:
                return None
            return f"[{event.attack}] {words}" if event.attack else words
        case _:
            return None


def _command(ran: events.ProgramRan) -> str:
    """The real client and its command line, the program without its folder, cut to a line."""
    words = " ".join([PurePath(ran.argv[0]).name, *ran.argv[1:]]) if ran.argv else ""
    return f"{ran.client} ({words[:100]}{'...' if len(words) > 100 else ''})"


def _attacker_sentence(event: events.AttackerEvent) -> str | None:
    match event:
        case events.FlowStarted():
            return f"sees a connection from {event.client}"
        case events.Intercepting():
            return "holds the ClientHello and opens its own handshake with the server"
        case events.Presenting():
            return f"presents a certificate for {event.certificate}, issued by {event.issuer}"
        case events.Read():
            return f"READS the {event.secret}: {event.value} ({event.where})"
        case events.Changed():
            return f"CHANGES the {event.what}: {event.before} -> {event.after}"
        case events.Injected():
            return f"INJECTS {event.what}"
        case events.Negotiated():
            return f"sees the server choose {event.suite_chosen}"
        case events.Captured():
            mine = sum(r.from_client for r in event.records)
            return f"keeps a capture of {len(event.records)} records ({mine} from the client)"
        case events.Recorded():
            return f"records the session ({event.frames} frames)"
        case events.DecryptedOffline(failure=None):
            return f"decrypts the recording with the stolen key {event.key}: {event.records} records"
        case events.DecryptedOffline():
            return f"tries the stolen key {event.key} on the recording: {event.failure}"
        case events.ReplayDone():
            return f"the server answered the replay with {event.server_records} records"
        case events.AttackFailed():
            return f"fails: {event.reason}"
        case events.ArpPoisoning():
            return (
                f"POISONS the ARP caches: tells {event.client} that {event.server} is at "
                f"{event.attacker_mac}, and {event.server} that {event.client} is (every "
                f"{event.interval_ms:g} ms)"
            )
        case events.ArpReplies():
            return (
                f"stops poisoning after {event.count} forged replies ({event.ended}); tells both the "
                f"truth again ({event.restored} replies)"
            )
        case events.PositioningFailed():
            return f"cannot get on the path ({event.positioning}): {event.error}"
        case events.AddonError() | events.FlowError():
            return f"error: {event.error}"
        case _:
            return None


def told(recorded: Iterable[Event]) -> list[tuple[float, Event, str]]:
    """The events worth a line, in time order: (milliseconds since the first event, event, sentence)."""
    ordered = sorted(recorded, key=lambda e: e.ts)
    if not ordered:
        return []
    start = datetime.fromisoformat(ordered[0].ts)
    lines = []
    for event in ordered:
        words = sentence(event)
        if words is not None:
            lines.append(((datetime.fromisoformat(event.ts) - start).total_seconds() * 1000, event, words))
    return lines


def printable(words: str) -> str:
    """`words` with what does not print (a terminal's escape sequences, a NUL) shown as Python escapes:
    a sentence carries what the roles saw on the wire, which the attacker chooses."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in words)


def styled_line(event: Event, words: str, elapsed_ms: float | None = None) -> Text:
    """One line of the story, as rich Text: never read as markup, whatever the words hold."""
    line = Text(f"{elapsed_ms:7.1f} ms  " if elapsed_ms is not None else "", style="dim")
    line.append(f"{event.role:>8}  ", style=ROLE_STYLE.get(event.role, ""))
    line.append(printable(words), style=STYLE.get(event.name, ""))
    return line


def print_timeline(recorded: Iterable[Event], console: Console) -> None:
    for elapsed, event, words in told(recorded):
        console.print(styled_line(event, words, elapsed), soft_wrap=True)
