"""The attacker's SSH port: mitmproxy does not speak SSH, so the attacker role listens for SSH here, beside
mitmproxy, in front of the real sshd. Every attack is still one addon file: per client connection this
part asks the loaded addon (through the role, `identity`) whether it answers SSH, and with what.

- An addon with an `ssh_identity(keys) -> SshIdentity` hook (`host-key-swap`, `rogue-host-ca`): the
  connection goes to an `SshRelay` (`lab.ssh.relay`) that presents that host key (and certificate), reads
  the password and the command, logs in to the real sshd itself and relays the session.
- Any other addon, or none (`eavesdrop` on SSH): a passive pass-through (`lab.ssh.tap`) that keeps the
  bytes as they passed; one `Captured` event per connection, which the checker searches for secrets.

The decision is taken when the connection is accepted, before a byte is read, so switching attacks
between connections needs no restart. Whatever an addon's hook or the relay raises becomes an
`AddonError` in the evidence (the run is an error) and ends that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncssh
import msgspec
from asyncssh.public_key import SSHOpenSSHCertificate

from lab import events
from lab.net import Address
from lab.ssh import relay
from lab.ssh.keys import SshKeys
from lab.ssh.relay import RelayError, SshRelay
from lab.ssh.tap import BytesSeen, SshTap

OUTPUT_LIMIT: Final = 4096
"""Bytes of a session's output kept in its `Read(secret="output")`: the first, enough to show it ran."""
CAPTURE_LIMIT: Final = 65536
"""Bytes of a pass-through connection kept in its `Captured` event (a lab session is a few KiB)."""
WHERE: Final = "ssh"
UPSTREAM_METHODS: Final = {
    "password": "password",
    "forwarded agent": "agent",
    "replayed signature": "publickey",
}
"""The relay's login methods as `SshUpstream.method` names them."""


class SshPartError(Exception):
    """The SSH port could not be opened."""


@dataclass(frozen=True)
class SshIdentity:
    """What the SSH man in the middle answers as: a host key of its own, and a host certificate for it
    (`rogue-host-ca`) or none (`host-key-swap`). What an addon's `ssh_identity` hook returns."""

    host_key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate | None = None

    @property
    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as OpenSSH shows it."""
        fingerprint: str = self.host_key.get_fingerprint()
        return fingerprint

    @property
    def ca(self) -> str | None:
        """The fingerprint of the SSH CA that signed the certificate, if there is one."""
        if not isinstance(self.certificate, SSHOpenSSHCertificate):
            return None
        fingerprint: str = self.certificate.signing_key.get_fingerprint()
        return fingerprint


IdentityOffer = Callable[[SshKeys], SshIdentity | None]
"""The role's question to its loaded addon: the identity to answer SSH with, None to pass through."""


class _Connection:
    """One client connection's evidence: every event stamped with the attack active when it was
    accepted and its number; the relay's records turned into the lab's events as they come."""

    def __init__(self, record: Callable[[events.AttackerEvent], None], attack: str, number: int) -> None:
        self._record = record
        self.attack = attack
        self.number = number
        self._output = bytearray()
        self._output_seen = False

    def record(self, event: events.AttackerEvent) -> None:
        self._record(msgspec.structs.replace(event, attack=self.attack, flow=self.number))

    def error(self, error: BaseException) -> None:
        words = " ".join(str(error).split())
        self.record(
            events.AddonError(error=f"{type(error).__name__}: {words}" if words else type(error).__name__)
        )

    def take(self, record: relay.RelayRecord) -> None:
        """A record of the relay's, as evidence."""
        match record:
            case relay.PasswordRead(password=password):
                self.record(events.Read(secret="password", value=password, where=WHERE, how="as_the_relay"))
            case relay.CommandRead(command=str(command)):
                self.record(events.Read(secret="command", value=command, where=WHERE, how="as_the_relay"))
            case relay.UpstreamAccepted(user=user, method=method):
                self.record(events.SshUpstream(user=user, method=UPSTREAM_METHODS[method], accepted=True))
            case relay.UpstreamRefused(user=user, method=method, reason=reason):
                self.record(
                    events.SshUpstream(
                        user=user, method=UPSTREAM_METHODS[method], accepted=False, reason=reason
                    )
                )
            case relay.OutputRead(data=data):
                self._output_seen = True
                self._output += data[: OUTPUT_LIMIT - len(self._output)]
            case relay.SessionRelayed() | relay.ClientLeft():
                self._flush_output()

    def _flush_output(self) -> None:
        if self._output_seen:
            text = self._output.decode(errors="replace")
            self.record(events.Read(secret="output", value=text, where=WHERE, how="as_the_relay"))
        self._output.clear()
        self._output_seen = False

    def captured(self, seen: list[BytesSeen]) -> None:
        """The pass-through's bytes, chunk by chunk as they passed, up to `CAPTURE_LIMIT` in all."""
        kept: list[events.CapturedRecord] = []
        room = CAPTURE_LIMIT
        for chunk in seen:
            if room <= 0:
                break
            data = chunk.data[:room]
            room -= len(data)
            kept.append(events.CapturedRecord(from_client=chunk.direction == "to server", body=data.hex()))
        self.record(events.Captured(records=kept))


class SshPart:
    """Listens on `listen` (port 0: any free port), the real sshd at `upstream`. Per connection it asks
    `identity` (the role's question to its addon) and relays or passes through; `attack` names the
    active attack for the evidence, `record` writes it (the attacker's `EvidenceLog`)."""

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: Address,
        keys: SshKeys,
        record: Callable[[events.AttackerEvent], None],
        identity: IdentityOffer,
        attack: Callable[[], str | None],
        *,
        timeout: float = relay.TIMEOUT,
    ) -> None:
        self.listen = listen
        self.upstream = upstream
        self.keys = keys
        self.timeout = timeout
        self._record = record
        self._identity = identity
        self._attack = attack
        self._numbers = itertools.count(1)
        self._banner: str | None = None
        """The real server's version, read once, at the first connection relayed."""
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._served: dict[asyncio.Task[None], SshRelay | None] = {}
        """Each connection in flight, and the relay serving it (None: passed through)."""
        self.connections = 0
        """Client connections accepted since the start (or the last `reset`)."""

    @property
    def port(self) -> int | None:
        """The bound port, None when not listening."""
        if self._socket is None:
            return None
        bound: int = self._socket.getsockname()[1]
        return bound

    @property
    def busy(self) -> bool:
        """A client connection is in flight."""
        return bool(self._served)

    async def start(self) -> int:
        """Listen and return the bound port."""
        host, port = self.listen
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            self._socket = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise SshPartError(f"cannot listen for SSH on {host}:{port}: {exc}") from exc
        self._socket.setblocking(False)
        self._accepting = asyncio.create_task(self._accept(self._socket))
        return self.port or 0

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError:  # out of descriptors, or a client that left at once: the port stays open
                await asyncio.sleep(0.05)
                continue
            self.connections += 1
            connection = _Connection(self._record, self._attack() or "", next(self._numbers))
            task = asyncio.create_task(self._serve(client, connection))
            self._served[task] = None
            task.add_done_callback(self._served.pop)

    async def _serve(self, client: socket.socket, connection: _Connection) -> None:
        try:
            identity = self._identity(self.keys)
            if identity is not None and not isinstance(identity, SshIdentity):
                raise TypeError(f"ssh_identity returned {type(identity).__name__}, not an SshIdentity")
        except Exception as exc:  # the addon's hook: its bug, this connection only
            connection.error(exc)
            client.close()
            return
        try:
            if identity is None:
                await self._pass_through(client, connection)
            else:
                await self._relay(client, connection, identity)
        except Exception as exc:  # a bug of the relay's: evidence, and the role goes on serving
            connection.error(exc)
        finally:
            client.close()

    async def _pass_through(self, client: socket.socket, connection: _Connection) -> None:
        tap = SshTap(self.upstream, self.timeout)
        try:
            reader, writer = await asyncio.open_connection(sock=client)
            await tap.serve(reader, writer)
        finally:
            connection.captured(tap.records)

    async def _relay(self, client: socket.socket, connection: _Connection, identity: SshIdentity) -> None:
        if self._banner is None:
            try:
                self._banner = await relay.read_banner(self.upstream, self.timeout)
            except RelayError as exc:
                connection.record(events.AttackFailed(reason=str(exc), step="upstream"))
                return
        ssh = SshRelay(
            self.upstream,
            identity.host_key,
            identity.certificate,
            timeout=self.timeout,
            on_record=connection.take,
            banner=self._banner,
        )
        task = asyncio.current_task()
        assert task is not None
        self._served[task] = ssh
        connection.record(events.SshPresenting(host_key=identity.fingerprint, ca=identity.ca))
        try:
            served = await ssh.serve(client)
        except (OSError, TimeoutError, asyncssh.Error):
            return  # the client left before it logged in (it refused the host key): the relay noted it
        await served.wait_closed()

    async def reset(self) -> None:
        """End every connection in flight (a run's leftovers must not write into the next run's
        evidence) and number connections from 1 again."""
        await self._end_connections()
        self._numbers = itertools.count(1)
        self.connections = 0

    async def _end_connections(self) -> None:
        for task, ssh in list(self._served.items()):
            if ssh is not None:
                await ssh.close()
            task.cancel()
        if self._served:
            await asyncio.wait(list(self._served))

    async def stop(self) -> None:
        """Stop listening and end every connection: nothing of the SSH port is left."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        await self._end_connections()
