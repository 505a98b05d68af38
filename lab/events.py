"""Every event a role can record: its name, its fields and their types, and which role writes it.

The evidence files are JSON lines, one event each: `{"event": "transfer_executed", "ts": ..., "role":
"server", "session": ..., ...}`. Each event is a `msgspec.Struct` here; writers build them and readers get
them back, validated: an unknown event, a missing or misspelt field or a field of the wrong type is an
`EvidenceError`, never a dict that silently lacks a key (docs/evidence.md says why msgspec).

One name can mean one thing for two roles with different fields (the client's `session_opened` says
which checks passed, the server's which suites it supports); the role decides which schema a line is
read with, so the role a line claims must be the role whose file it is in.
"""

from __future__ import annotations

import datetime
from typing import Any, Final, Literal, Union

import msgspec

SCHEMA_VERSION: Final = 7
"""Bumped whenever an event is added, removed or changes its fields (docs/evidence.md)."""

ReadHow = Literal["in_the_clear", "as_the_relay", "decrypted_offline"]
"""How an attacker can come to read a secret: on the wire, as a man in the middle holding both legs'
keys, or from a recording with a key obtained later."""


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="event"):
    """What every line has: when, and who wrote it (filled in by the `EvidenceLog` that writes it)."""

    ts: str = ""
    role: str = ""

    @property
    def name(self) -> str:
        """The event's name, as the line's `event` field spells it."""
        return str(self.__struct_config__.tag)


# Any role ------------------------------------------------------------------------------------------------


class ControlRefused(Event, frozen=True, kw_only=True, tag="control_refused"):
    """A control request without the lab's secret was turned away (one of the first few since the
    owner's last request: `lab.control.REFUSALS_ONE_BY_ONE`)."""

    peer: str
    cmd: str


class ControlRefusalsCounted(Event, frozen=True, kw_only=True, tag="control_refusals_counted"):
    """More control requests without the lab's secret were turned away than are recorded one by one:
    how many, and the first hosts they came from (recorded before the owner's next request)."""

    count: int
    peers: list[str]


class Refusal(Event, frozen=True, kw_only=True, tag="refusal"):
    """This side's protection refused the peer (a typed `lab.channel.errors.Refusal`)."""

    protection: str
    step: str
    message: str
    error: str
    session: str | None = None


class PeerRefused(Event, frozen=True, kw_only=True, tag="peer_refused"):
    """The peer's alert said it refused us."""

    protection: str | None
    step: str
    message: str
    session: str | None = None


class ProtocolError(Event, frozen=True, kw_only=True, tag="protocol_error"):
    """The peer broke the protocol (or the connection broke) without any protection refusing."""

    step: str
    message: str
    error: str
    session: str | None = None


class SessionClosed(Event, frozen=True, kw_only=True, tag="session_closed"):
    session: str | None = None


# The client ----------------------------------------------------------------------------------------------


class Connecting(Event, frozen=True, kw_only=True, tag="connecting"):
    host: str
    port: int
    server_name: str
    protections: dict[str, bool]


class ConnectionFailed(Event, frozen=True, kw_only=True, tag="connection_failed"):
    host: str
    port: int
    error: str


class ClientSessionOpened(Event, frozen=True, kw_only=True, tag="session_opened"):
    """The client accepted the server: the key it accepted and which checks passed."""

    suite: str
    offered: list[str]
    client_random: str
    server_random: str
    server_subject: str
    server_key: str
    """SHA-256 fingerprint of the key the client accepted (`lab.channel.connection.key_fingerprint`)."""
    checks: list[str]
    pin: str | None


class ClientRecordSent(Event, frozen=True, kw_only=True, tag="record_sent"):
    seq: int
    op: str
    plaintext: str
    """`lab.evidence.digest` of the plaintext: matched against what the other roles saw."""
    frame: str
    """The digest of the whole frame as it went on the wire."""
    to: str | None = None
    amount: int | None = None


class ClientRecordReceived(Event, frozen=True, kw_only=True, tag="record_received"):
    seq: int
    plaintext: str
    frame: str
    size: int


class NoReply(Event, frozen=True, kw_only=True, tag="no_reply"):
    op: str


class ReplyUnreadable(Event, frozen=True, kw_only=True, tag="reply_unreadable"):
    """The record decrypted, but what it held is no bank reply."""

    op: str
    reason: str


class Reply(Event, frozen=True, kw_only=True, tag="reply"):
    op: str
    reply: dict[str, Any]
    """The bank's answer as it arrived: `ok`, and `balance`, `transfer`, `user` or `error`."""


# The server ----------------------------------------------------------------------------------------------


class ProgramRan(Event, frozen=True, kw_only=True, tag="program_ran"):
    """A real client's program ran (`lab.clients`): what it was told and what it said. The password
    is masked wherever it appeared."""

    client: str
    argv: list[str]
    exit_code: int | None
    """None: it did not end within its time and was killed."""
    duration_ms: float
    stdout: str
    """The end of what it printed (capped)."""
    stderr: str


class Visited(Event, frozen=True, kw_only=True, tag="visited"):
    """What the lab read off a real client's visit to bank.lab: whether it got what it came for, its
    words, and the protection those words correspond to (its adapter's table)."""

    client: str
    completed: bool
    words: str
    protection: str | None
    missing: list[str]
    """Programs it needs that are not installed here (then nothing ran)."""


class SshSession(Event, frozen=True, kw_only=True, tag="ssh_session"):
    """What the lab read off a real `ssh` run (`lab.clients.ssh`): the client configuration, how it
    ended, what OpenSSH asked through SSH_ASKPASS, and its own words."""

    client: str
    command: str
    """The command it asked the server to run."""
    exit_code: int | None
    """OpenSSH's exit: the command's own, or 255 for ssh's own failure; None: killed at its time."""
    prompts: list[str]
    """What OpenSSH asked through SSH_ASKPASS, in order (a password prompt: it sent the password)."""
    words: str
    """The lines of its standard error that say something (OpenSSH's warnings and refusals)."""
    output: str
    """What the command printed, as the client received it (capped)."""
    missing: list[str]
    """Programs it needs that are not installed here (then nothing ran)."""

    def said(self) -> str:
        if self.missing:
            return f"could not run {self.client}: not installed here: {', '.join(self.missing)}"
        asked = f", asked {len(self.prompts)}x through SSH_ASKPASS" if self.prompts else ""
        ending = "was killed at its time" if self.exit_code is None else f"exits {self.exit_code}"
        return f"ssh ({self.client}) {ending}{asked}: {self.words or 'no words'}"


class Listening(Event, frozen=True, kw_only=True, tag="listening"):
    host: str
    port: int
    protections: dict[str, bool]


class ServerSessionOpened(Event, frozen=True, kw_only=True, tag="session_opened"):
    session: str
    peer: str
    suite: str
    offered: list[str]
    supported: list[str]
    client_random: str
    server_random: str


class ServerRecordReceived(Event, frozen=True, kw_only=True, tag="record_received"):
    session: str
    seq: int
    plaintext: str
    frame: str
    size: int


class Request(Event, frozen=True, kw_only=True, tag="request"):
    session: str
    seq: int
    op: str | None
    error: str | None


class TransferExecuted(Event, frozen=True, kw_only=True, tag="transfer_executed"):
    session: str
    seq: int
    transfer: int
    from_account: str
    to: str
    amount: int


class ServerRecordSent(Event, frozen=True, kw_only=True, tag="record_sent"):
    session: str
    seq: int
    plaintext: str
    frame: str


class WebListening(Event, frozen=True, kw_only=True, tag="web_listening"):
    """The HTTPS bank (`lab.bank.web`) is up: its HTTPS port and its plain-HTTP front door."""

    host: str
    https: int
    http: int


class WebRequest(Event, frozen=True, kw_only=True, tag="web_request"):
    """One HTTP request the HTTPS bank answered, over TLS or on the plain front door."""

    peer: str
    tls: bool
    method: str
    path: str
    status: int
    session: str | None
    """The digest of the session cookie it carried (`lab.evidence.digest`), if any."""


class WebLogin(Event, frozen=True, kw_only=True, tag="web_login"):
    """A password was right: the session cookie issued (its digest), which the checker looks for in what
    the attacker read."""

    user: str
    session: str


class SshLogin(Event, frozen=True, kw_only=True, tag="ssh_login"):
    """The real sshd's log: a login it accepted or refused, and from where."""

    user: str
    method: str
    """`password` or `publickey`."""
    accepted: bool
    key: str | None = None
    """For `publickey`: the key's SHA256 fingerprint, as sshd logs it."""
    peer: str

    def said(self) -> str:
        how = f"{self.method} {self.key}" if self.key else self.method
        verdict = "ACCEPTS" if self.accepted else "refuses"
        return f"sshd {verdict} {self.user}'s login by {how} from {self.peer}"


class SshCommandRan(Event, frozen=True, kw_only=True, tag="ssh_command_ran"):
    """A command ran on the real server as the customer (its login shell wrote it down)."""

    user: str
    command: str

    def said(self) -> str:
        return f"RUNS `{self.command}` as {self.user}"


class SessionCut(Event, frozen=True, kw_only=True, tag="session_cut"):
    session: str
    reason: str


class InternalError(Event, frozen=True, kw_only=True, tag="internal_error"):
    """A bug in the server: the run is an `error`."""

    error: str
    session: str | None = None


# The attacker --------------------------------------------------------------------------------------------


class AttackerEvent(Event, frozen=True, kw_only=True):
    """What every attacker line says about the flow it belongs to (`lab.mitm.wire.SessionView`)."""

    attack: str = ""
    flow: int | None = None
    client_random: str | None = None
    suite: str | None = None


class FlowStarted(AttackerEvent, frozen=True, kw_only=True, tag="flow_started"):
    client: str


class FlowEnded(AttackerEvent, frozen=True, kw_only=True, tag="flow_ended"):
    client_records: int | None = None
    server_records: int | None = None


class FlowError(AttackerEvent, frozen=True, kw_only=True, tag="flow_error"):
    error: str


class AddonError(AttackerEvent, frozen=True, kw_only=True, tag="addon_error"):
    """A bug in the addon: the run is an `error`."""

    error: str


class Read(AttackerEvent, frozen=True, kw_only=True, tag="read"):
    secret: str
    value: Any
    """As the attacker read it; the checker counts it only if it equals the real secret."""
    where: str
    how: ReadHow


class Changed(AttackerEvent, frozen=True, kw_only=True, tag="changed"):
    what: str
    before: Any
    after: Any


class Injected(AttackerEvent, frozen=True, kw_only=True, tag="injected"):
    what: str
    frames: int | None = None
    record: int | None = None


class AttackFailed(AttackerEvent, frozen=True, kw_only=True, tag="attack_failed"):
    """The attacker's own account of why it got nothing; verdicts never take a protection from it."""

    reason: str
    step: str | None = None


class CapturedRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_client: bool
    body: str
    """The application frame's body as it passed, hex."""


class Captured(AttackerEvent, frozen=True, kw_only=True, tag="captured"):
    """A passive attacker's capture of the records that passed: the checker searches it for secrets."""

    records: list[CapturedRecord]


class Recorded(AttackerEvent, frozen=True, kw_only=True, tag="recorded"):
    path: str
    frames: int


class DecryptedOffline(AttackerEvent, frozen=True, kw_only=True, tag="decrypted_offline"):
    """The attacker tried a recording with a private key it holds: which key, and what came out."""

    key: str
    """The fingerprint of the key used: the checker compares it with the real server key."""
    records: int
    failure: str | None = None


class Intercepting(AttackerEvent, frozen=True, kw_only=True, tag="intercepting"):
    offered: list[str]


class SshPresenting(AttackerEvent, frozen=True, kw_only=True, tag="ssh_presenting"):
    """The SSH man in the middle answers as the server with a host key of its own, or a host
    certificate signed by `ca` (fingerprints, SHA256:...)."""

    host_key: str
    ca: str | None = None

    def said(self) -> str:
        signed = f", certified by the CA {self.ca}" if self.ca else ""
        return f"answers as the SSH server with its own host key {self.host_key}{signed}"


class SshUpstream(AttackerEvent, frozen=True, kw_only=True, tag="ssh_upstream"):
    """The relay's own login to the real sshd as the customer: how, and whether it got in."""

    user: str
    method: str
    """`password`, `publickey` (the client's own signature, replayed) or `agent` (the client's
    forwarded agent signing for it)."""
    accepted: bool
    reason: str | None = None
    """Why the real server refused it."""

    def said(self) -> str:
        if self.accepted:
            return f"logs in to the real server as {self.user} by {self.method}"
        return f"is refused by the real server as {self.user} by {self.method}: {self.reason or 'no reason'}"


class Presenting(AttackerEvent, frozen=True, kw_only=True, tag="presenting"):
    certificate: str
    issuer: str
    key: str
    malformed: str | None = None
    """Why the certificate does not parse as a whole (a field a client reads is garbage), if it does not."""


class UpstreamEstablished(AttackerEvent, frozen=True, kw_only=True, tag="upstream_established"):
    server_side_suite: str


class DownstreamEstablished(AttackerEvent, frozen=True, kw_only=True, tag="downstream_established"):
    client_side_suite: str


class Negotiated(AttackerEvent, frozen=True, kw_only=True, tag="negotiated"):
    suite_chosen: str


class ReplayDone(AttackerEvent, frozen=True, kw_only=True, tag="replay_done"):
    server_records: int


# ARP positioning (lab/arp, docs/arp.md) -----------------------------------------------------------------


class ArpEntry(Event, frozen=True, kw_only=True, tag="arp_entry"):
    """The client's ARP cache entry for the server, as its kernel held it at one moment of the run."""

    moment: Literal["before", "during", "after"]
    ip: str
    mac: str | None
    """None: no entry (a cold cache)."""
    permanent: bool


class ArpPinned(Event, frozen=True, kw_only=True, tag="arp_pinned"):
    """static_arp: the client made its entry for the server permanent, on the server's real MAC."""

    ip: str
    mac: str


class ArpDetected(Event, frozen=True, kw_only=True, tag="arp_detected"):
    """The client's watch on its own ARP cache saw an address move to another MAC, or two addresses come
    to share one (lab.arp.watch). Evidence only: the entry is used all the same."""

    kind: Literal["moved", "shared"]
    ip: str
    mac: str
    before: str


class HopsMeasured(Event, frozen=True, kw_only=True, tag="hops_measured"):
    """The TTL of the server's answer to an ICMP echo: one less than the server sent means a router,
    here the attacker forwarding, in between."""

    moment: Literal["before", "during", "after"]
    ip: str
    ttl: int | None
    """None: no answer."""


class ArpPoisoning(AttackerEvent, frozen=True, kw_only=True, tag="arp_poisoning"):
    """The attacker started telling each victim that the other is at its own MAC."""

    client: str
    server: str
    client_mac: str
    server_mac: str
    attacker_mac: str
    interval_ms: float


class ArpReplies(AttackerEvent, frozen=True, kw_only=True, tag="arp_replies"):
    """What the poisoning sent, once it ended: forged replies, their first and last moments (ISO 8601),
    why the loop ended, and the true replies sent to restore both caches."""

    count: int
    first: str | None
    last: str | None
    ended: str
    restored: int


class PositioningFailed(AttackerEvent, frozen=True, kw_only=True, tag="positioning_failed"):
    """The attacker could not get on the path (no raw sockets, no forwarding, a victim that does not
    answer): the run is an `error` with this reason."""

    positioning: str
    error: str


ANY_ROLE: Final[tuple[type[Event], ...]] = (ControlRefused, ControlRefusalsCounted)
CHANNEL_ENDPOINT: Final[tuple[type[Event], ...]] = (Refusal, PeerRefused, ProtocolError, SessionClosed)

EVENTS: Final[dict[str, tuple[type[Event], ...]]] = {
    "client": (
        *ANY_ROLE,
        *CHANNEL_ENDPOINT,
        Connecting,
        ConnectionFailed,
        ClientSessionOpened,
        ClientRecordSent,
        ClientRecordReceived,
        NoReply,
        ReplyUnreadable,
        Reply,
        ProgramRan,
        Visited,
        SshSession,
        ArpEntry,
        ArpPinned,
        ArpDetected,
        HopsMeasured,
    ),
    "server": (
        *ANY_ROLE,
        *CHANNEL_ENDPOINT,
        Listening,
        ServerSessionOpened,
        ServerRecordReceived,
        Request,
        TransferExecuted,
        ServerRecordSent,
        SessionCut,
        InternalError,
        WebListening,
        WebRequest,
        WebLogin,
        SshLogin,
        SshCommandRan,
    ),
    "attacker": (
        *ANY_ROLE,
        FlowStarted,
        FlowEnded,
        FlowError,
        AddonError,
        Read,
        Changed,
        Injected,
        AttackFailed,
        Captured,
        Recorded,
        DecryptedOffline,
        Intercepting,
        Presenting,
        SshPresenting,
        SshUpstream,
        UpstreamEstablished,
        DownstreamEstablished,
        Negotiated,
        ReplayDone,
        ArpPoisoning,
        ArpReplies,
        PositioningFailed,
    ),
}
"""Which events each role writes: a line is read with its role's schema."""

LAB_FAILURES: Final[tuple[type[Event], ...]] = (InternalError, AddonError, PositioningFailed)
"""Events that say the lab itself failed: a run with one is an `error`, whatever else it shows."""


class EvidenceError(ValueError):
    """An evidence line that is not an event of its role's schema: the run it belongs to is an `error`."""

    def __init__(self, role: str, line: int, reason: str) -> None:
        super().__init__(f"{role} evidence, line {line}: {reason}")
        self.role, self.line, self.reason = role, line, reason


_DECODERS: Final = {role: msgspec.json.Decoder(Union[events]) for role, events in EVENTS.items()}  # noqa: UP007


def decode(role: str, line: bytes, number: int = 0) -> Event:
    """One evidence line of `role`'s, validated; raises `EvidenceError` saying what is wrong with it."""
    decoder = _DECODERS.get(role)
    if decoder is None:
        raise EvidenceError(role, number, f"no role {role!r}; roles are {', '.join(EVENTS)}")
    try:
        event: Event = decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise EvidenceError(role, number, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise EvidenceError(role, number, f"not JSON: {exc}") from None
    if event.role != role:
        raise EvidenceError(role, number, f"a {event.role!r} event in the {role}'s evidence")
    try:
        datetime.datetime.fromisoformat(event.ts)
    except ValueError:
        raise EvidenceError(role, number, f"`ts` is no ISO 8601 time: {event.ts!r}") from None
    return event


def encode(event: Event) -> bytes:
    return msgspec.json.encode(event)


def to_dict(event: Event) -> dict[str, Any]:
    """The event as the line's JSON object (for the report)."""
    fields: dict[str, Any] = msgspec.to_builtins(event)
    return fields
