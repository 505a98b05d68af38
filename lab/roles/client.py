"""The client role: a bank customer who logs in, transfers, and reads the balance over the lab channel;
on the real-TLS stack, the real clients that visit bank.lab (`lab.clients`); on the SSH stack, the real
`ssh` in each client configuration (`lab.clients.ssh`)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

from lab import events
from lab.arp.poison import PositioningError
from lab.arp.victim import ArpVictim
from lab.bank import protocol
from lab.channel.connection import ClientConfig, ClientConnection, HandshakeComplete
from lab.channel.errors import ChannelError
from lab.channel.keylog import keylog_line
from lab.channel.protections import Protections
from lab.clients.adapters import CLIENTS, Adapter, Probe
from lab.clients.browser import Browsers
from lab.clients.ssh import SSH_CLIENTS, SshSetupError, ssh_session
from lab.clients.ssh import TIMEOUT as SSH_TIMEOUT
from lab.clients.visit import make_visit
from lab.control import ControlError, Handler, protections_from_request
from lab.evidence import EvidenceLog, digest, now
from lab.roles.transport import DEFAULT_TIMEOUTS, ChannelStream, Timeouts
from lab.state import CLIENT_ACCOUNT, SERVER_NAME, StateDir


class BankRefused(Exception):
    """The bank answered with an error (wrong password, insufficient funds, ...)."""


class NoReply(Exception):
    """The server closed the session without answering a request."""


class ReplyUnreadable(Exception):
    """A reply record decrypted (or passed unauthenticated) to bytes that are no bank message."""


@dataclass(frozen=True)
class Command:
    """One request of a session; one the bank's protocol cannot carry raises `BankProtocolError` here,
    before anything is sent."""

    op: Literal["balance", "transfer"]
    to: str = ""
    amount: int = 0

    def __post_init__(self) -> None:
        if self.op not in ("balance", "transfer"):
            raise protocol.BankProtocolError(f"unknown operation {self.op!r}")
        self.request()

    def request(self) -> bytes:
        return protocol.transfer(self.to, self.amount) if self.op == "transfer" else protocol.balance()


@dataclass
class SessionResult:
    handshake: HandshakeComplete
    replies: list[dict[str, Any]] = field(default_factory=list)


async def run_session(
    state: StateDir,
    host: str,
    port: int,
    protections: Protections,
    commands: list[Command],
    *,
    server_name: str = SERVER_NAME,
    user: str = CLIENT_ACCOUNT,
    password: str | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> SessionResult:
    """Log in and run `commands`. Raises `ChannelError`, `BankRefused`, `NoReply`, `ReplyUnreadable`
    or `OSError`."""
    evidence = state.evidence("client")
    config = ClientConfig(protections, server_name, state.trust())
    evidence.record(
        events.Connecting(host=host, port=port, server_name=server_name, protections=protections.as_dict())
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeouts.handshake)
    stream = ChannelStream(ClientConnection(config), reader, writer)
    try:
        done = await stream.handshake(timeouts.handshake)
        identity = done.identity
        assert identity is not None
        state.log_lab_keys("client", keylog_line("client", done))
        evidence.record(
            events.ClientSessionOpened(
                suite=done.suite.name,
                offered=[s.name for s in done.offered],
                client_random=done.client_random.hex(),
                server_random=done.server_random.hex(),
                server_subject=identity.subject,
                server_key=identity.fingerprint,
                checks=list(identity.checks),
                pin=identity.pin,
            )
        )
        result = SessionResult(done)
        secret = password if password is not None else state.client_password(user)
        await _exchange(stream, evidence, "login", protocol.login(user, secret), timeouts, result)
        for command in commands:
            await _exchange(
                stream,
                evidence,
                command.op,
                command.request(),
                timeouts,
                result,
                to=command.to or None,
                amount=command.amount if command.op == "transfer" else None,
            )
        evidence.record(events.SessionClosed())
        return result
    except ChannelError as error:
        evidence.channel_error(error)
        raise
    finally:
        await stream.close()


async def _exchange(
    stream: ChannelStream,
    evidence: EvidenceLog,
    op: str,
    request: bytes,
    timeouts: Timeouts,
    result: SessionResult,
    to: str | None = None,
    amount: int | None = None,
) -> None:
    before = now()  # the record's moment: the attacker may act on it before `send` returns
    sent = await stream.send(request)
    evidence.record(
        events.ClientRecordSent(
            seq=sent.seq,
            op=op,
            plaintext=digest(request),
            frame=digest(sent.frame),
            to=to,
            amount=amount,
            ts=before,
        )
    )
    record = await stream.receive(timeouts.idle)
    if record is None:
        evidence.record(events.NoReply(op=op))
        raise NoReply(f"the server closed the session without answering {op}")
    evidence.record(
        events.ClientRecordReceived(
            seq=record.seq,
            plaintext=digest(record.data),
            frame=digest(record.frame.encode()),
            size=len(record.data),
        )
    )
    try:
        reply = protocol.parse_reply(record.data)
    except protocol.BankProtocolError as exc:
        evidence.record(events.ReplyUnreadable(op=op, reason=str(exc)))
        raise ReplyUnreadable(f"the reply to {op} is no bank message: {exc}") from None
    evidence.record(events.Reply(op=op, reply=reply))
    result.replies.append(reply)
    if not reply["ok"]:
        raise BankRefused(f"{op}: {reply.get('error', 'refused')}")


def control_handlers(state: StateDir, browsers: Browsers) -> dict[str, Handler]:
    """The client as the checker drives it: one `session` request, one bank session, one answer; one
    `visit`, one real client's visit (a browser's in one of `browsers`, which the caller closes); one
    `ssh`, one run of the real `ssh` in a client configuration of the SSH stack."""

    async def session(request: dict[str, Any]) -> dict[str, Any]:
        protections = protections_from_request(request)
        host, port = request.get("host"), request.get("port")
        commands = request.get("commands", [])
        if not isinstance(host, str) or not isinstance(port, int) or not isinstance(commands, list):
            raise ControlError('a session needs "host" (string), "port" (integer) and "commands" (list)')
        try:
            parsed = [Command(**command) for command in commands]
        except (TypeError, protocol.BankProtocolError) as exc:
            raise ControlError(f"bad command: {exc}") from None
        server_name = str(request.get("server_name", SERVER_NAME))
        try:
            result = await run_session(state, host, port, protections, parsed, server_name=server_name)
        except ChannelError as exc:
            return {
                "outcome": type(exc).__name__,
                "protection": getattr(exc, "protection", None),
                "step": exc.step,
                "message": exc.message,
            }
        except (BankRefused, NoReply, ReplyUnreadable) as exc:
            return {"outcome": type(exc).__name__, "message": str(exc)}
        except (OSError, TimeoutError) as exc:
            state.evidence("client").record(
                events.ConnectionFailed(host=host, port=port, error=str(exc) or "timeout")
            )
            return {"outcome": "connection_failed", "message": str(exc) or "timed out"}
        return {"outcome": "ok", "suite": result.handshake.suite.name, "replies": result.replies}

    async def lab_keylog(request: dict[str, Any]) -> dict[str, Any]:
        return {"lab_keylog": state.take_lab_keylog("client")}

    async def visit(request: dict[str, Any]) -> dict[str, Any]:
        """A real client's visit to bank.lab (the real-TLS stack): `client` is a client id, or
        `command` a program of one's own (`mitmlab probe`); bank.lab means `address`, `https`, `http`."""
        address, https, http = request.get("address"), request.get("https"), request.get("http")
        if not isinstance(address, str) or not isinstance(https, int) or not isinstance(http, int):
            raise ControlError('a visit needs "address" (string), "https" and "http" (ports)')
        command = request.get("command")
        if command is not None:
            if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
                raise ControlError('"command" is a program and its arguments, a list of strings')
            adapter: Adapter = Probe(tuple(command))
        else:
            client = CLIENTS.get(str(request.get("client")))
            if client is None:
                raise ControlError(f"no client {request.get('client')!r}; clients are {', '.join(CLIENTS)}")
            adapter = client
        done = await make_visit(state, adapter, address, https, http, browsers)
        return {"visited": events.to_dict(done.visited), "keylog": done.keylog}

    async def ssh(request: dict[str, Any]) -> dict[str, Any]:
        """The real `ssh` in one client configuration (`lab.clients.ssh`) against `host`:`port` (the
        server's sshd, or the attacker's relay), bounded by `timeout` seconds."""
        client = SSH_CLIENTS.get(str(request.get("client")))
        if client is None:
            raise ControlError(
                f"no SSH client {request.get('client')!r}; SSH clients are {', '.join(SSH_CLIENTS)}"
            )
        host, port = request.get("host"), request.get("port")
        if not isinstance(host, str) or not isinstance(port, int):
            raise ControlError('an ssh run needs "host" (string) and "port" (integer)')
        timeout = request.get("timeout", SSH_TIMEOUT)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 120:
            raise ControlError('"timeout" is a number of seconds, above 0 and at most 120')
        try:
            done = await ssh_session(state, client, host, port, float(timeout))
        except SshSetupError as exc:
            raise ControlError(str(exc)) from None
        if done.missing:
            return {"outcome": "not_installed", "missing": done.missing}
        return {"outcome": "ran", "exit_code": done.exit_code}

    victim = ArpVictim(lambda: state.evidence("client"))

    async def arp_begin(request: dict[str, Any]) -> dict[str, Any]:
        """ARP positioning (docs/arp.md): `server` is the server's address; `static_arp` pins its entry;
        `warm` false leaves the cache cold (a victim that never talked)."""
        server = request.get("server")
        if not isinstance(server, str):
            raise ControlError('"server" is the server\'s IP address')
        try:
            entry = await victim.begin(
                server, static_arp=bool(request.get("static_arp")), warm=bool(request.get("warm", True))
            )
        except PositioningError as exc:
            raise ControlError(str(exc)) from None
        return {"mac": entry.mac if entry else None}

    async def arp_during(request: dict[str, Any]) -> dict[str, Any]:
        """The entry and the hops now, or (`wait`: seconds) once the entry has moved."""
        wait = request.get("wait", 0)
        if not isinstance(wait, int | float) or not 0 <= wait <= 30:
            raise ControlError('"wait" is a number of seconds, at most 30')
        return {"moved": await victim.during(float(wait))}

    async def arp_end(request: dict[str, Any]) -> dict[str, Any]:
        try:
            await victim.end()
        except PositioningError as exc:
            raise ControlError(str(exc)) from None
        return {}

    async def reset(request: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(PositioningError):  # a pin that will not go is the next begin's to say
            await victim.end()
        state.reset_role("client")
        return {}

    async def status(request: dict[str, Any]) -> dict[str, Any]:
        return {}

    return {
        "session": session,
        "visit": visit,
        "ssh": ssh,
        "arp_begin": arp_begin,
        "arp_during": arp_during,
        "arp_end": arp_end,
        "reset": reset,
        "status": status,
        "lab_keylog": lab_keylog,
    }
