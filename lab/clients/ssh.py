"""The SSH stack's victims (docs/ssh.md): the real `ssh` (Debian's openssh-client) in each client
configuration of the `ssh` view, run non-interactively and bounded in time, and read as OpenSSH's own
answers: how it exited, what it asked through SSH_ASKPASS, and the lines of its standard error that say
something.

Each run has a scratch folder of its own (0700, removed after): its known_hosts, a copy of the
customer's key (0600, or ssh refuses it), the askpass script and the password file it reads, and the
agent's socket. The password is never in an argument: OpenSSH asks the askpass script, which notes the
prompt and answers the password only to a password prompt ("no" to anything else, e.g. a host-key
question). Every program started for a run is in a process group of its own, killed when the run ends,
whether it ended by itself or at its time.

Options as FIELD-NOTES (SSH) measured them: `-F /dev/null` (Debian's ssh_config hashes known_hosts and
turns GSSAPI on), `HostKeyAlias=server.lab` (the alias replaces `[host]:port` in the known_hosts lookup
and is the principal a host certificate must name, so a relay on another port is checked as the real
server is), stdin /dev/null and `SSH_ASKPASS_REQUIRE=force` (`BatchMode=yes` would disable passwords).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from lab import events, system
from lab.ssh.keys import SERVER_NAME, SshKeys, cert_authority_line, known_host_line
from lab.state import CLIENT_ACCOUNT, StateDir

COMMAND: Final = "echo transfer 100 to bob"
"""What the customer asks the server to run. The server's login shell notes every command it runs
(`lab.ssh.sshd`), so the lab sees whether it ran, whoever sent it."""
TIMEOUT: Final = 15.0
"""Seconds a run may take, agent included: a session here takes well under one; ssh's own
ConnectTimeout is 5 s and the relay gives each step 10 s."""
CONNECT_TIMEOUT: Final = 5
OUTPUT_CAP: Final = 65536
"""Bytes of stdout or stderr kept from one run: a server that floods gives no more."""
MASK: Final = "********"
REPOSITORY: Final = "~/bank.git"
"""The customer's repository on the server, as git's URL names it (`ssh://alice@host:port/~/bank.git`):
a bare repository in the customer's home, which the server side makes."""
PASSWORD_PROMPT: Final = "'s password: "
"""How OpenSSH's password prompt ends (`alice@server.lab's password: `): the one prompt the askpass
script answers with the password."""

Strict = Literal["yes", "no", "accept-new"]
"""`StrictHostKeyChecking`: `yes` refuses a host it has no key for; `accept-new` adds a new host's key
and refuses a changed one; `no` adds a new one and, for a changed one, goes on with password and
keyboard-interactive login and agent forwarding disabled."""


class Known(StrEnum):
    """What the client's known_hosts holds before the run."""

    NOTHING = "nothing"
    """First contact: the client has never met the server."""
    REAL_KEY = "real-key"
    """The real server's host key, pinned for server.lab."""
    HOST_CA = "host-ca"
    """An `@cert-authority` line: host certificates for server.lab from the lab's SSH CA."""


class Login(StrEnum):
    PASSWORD = "password"
    """The customer's password, typed when OpenSSH asks (through SSH_ASKPASS)."""
    PUBLICKEY = "publickey"
    """The customer's key (免密钥登录): a signature over this session; no password is offered."""


class SshSetupError(Exception):
    """The lab could not set the client up (its agent did not start, or would not take the key): no
    verdict of OpenSSH's, the run is an error with this reason."""


@dataclass(frozen=True)
class SshClient:
    """One client configuration: one column of the `ssh` view."""

    name: str
    summary: str
    """One line for --help and the report."""
    known: Known
    strict: Strict
    login: Login
    agent: bool = False
    """The key is held by an ssh-agent, forwarded to the server (`ssh -A`)."""
    git: bool = False
    """`git clone` of the customer's repository over SSH (seed 002 §四), with `ssh` as its transport."""

    @property
    def programs(self) -> tuple[str, ...]:
        """What it runs, for `lab.system.missing`."""
        return ("ssh", *(("ssh-agent", "ssh-add") if self.agent else ()), *(("git",) if self.git else ()))

    @property
    def host_key_protection(self) -> str | None:
        """The protection id its known_hosts stands for (`lab.stacks.ssh`): `pinning` for the real key,
        `ca_trust` for an `@cert-authority` line, None on first contact."""
        return {Known.REAL_KEY: "pinning", Known.HOST_CA: "ca_trust"}.get(self.known)

    def known_hosts(self, keys: SshKeys) -> str:
        """Its known_hosts file before the run."""
        if self.known is Known.REAL_KEY:
            return known_host_line(keys.public(keys.server_key))
        if self.known is Known.HOST_CA:
            return cert_authority_line(keys.public(keys.lab_ca))
        return ""

    @property
    def command(self) -> str:
        """What it asks the server to run: `COMMAND`, or git's own request for the repository."""
        return f"git-upload-pack '{REPOSITORY}'" if self.git else COMMAND

    def argv(self, scratch: Scratch, host: str, port: int, user: str, command: str) -> list[str]:
        """The program to run; git asks for its own command (`command` is for `ssh`)."""
        if self.git:
            return ["git", "clone", f"ssh://{user}@{host}:{port}/{REPOSITORY}", str(scratch.clone)]
        return [*self.ssh(scratch), "-p", str(port), f"{user}@{host}", command]

    def env(self, scratch: Scratch) -> dict[str, str]:
        """What it needs in its environment beside the askpass: git is told which ssh to run (it adds
        the port, the destination and its command), and no git configuration of this machine's."""
        if not self.git:
            return {}
        return {
            "GIT_SSH_COMMAND": shlex.join(self.ssh(scratch)),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }

    def ssh(self, scratch: Scratch) -> list[str]:
        """`ssh` and its options, without the destination."""
        options = {
            "UserKnownHostsFile": str(scratch.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": self.strict,
            "HostKeyAlias": SERVER_NAME,
            "ConnectTimeout": str(CONNECT_TIMEOUT),
        }
        if self.login is Login.PASSWORD:
            options |= {"PreferredAuthentications": "password", "PubkeyAuthentication": "no"}
        else:
            options |= {
                "PreferredAuthentications": "publickey",
                "PasswordAuthentication": "no",
                "KbdInteractiveAuthentication": "no",
                "IdentitiesOnly": "yes",
                # with an agent, only the public half is named: ssh has the agent sign with its private half
                "IdentityFile": str(scratch.public_key if self.agent else scratch.private_key),
                "IdentityAgent": str(scratch.agent_socket) if self.agent else "none",
            }
        flags = [arg for name, value in options.items() for arg in ("-o", f"{name}={value}")]
        return ["ssh", "-F", "/dev/null", *flags, *(["-A"] if self.agent else [])]


SSH_CLIENTS: Final[dict[str, SshClient]] = {
    client.name: client
    for client in (
        SshClient(
            "tofu",
            "first contact, nothing known, accept-new, password",
            Known.NOTHING,
            "accept-new",
            Login.PASSWORD,
        ),
        SshClient(
            "known-key",
            "the real host key in known_hosts, strict checking (yes), password",
            Known.REAL_KEY,
            "yes",
            Login.PASSWORD,
        ),
        SshClient(
            "known-key-no",
            "the real host key in known_hosts, StrictHostKeyChecking=no, password",
            Known.REAL_KEY,
            "no",
            Login.PASSWORD,
        ),
        SshClient(
            "host-ca",
            "@cert-authority for the lab's SSH CA, strict checking (yes), password",
            Known.HOST_CA,
            "yes",
            Login.PASSWORD,
        ),
        SshClient(
            "host-ca-accept-new",
            "@cert-authority for the lab's SSH CA, accept-new, password",
            Known.HOST_CA,
            "accept-new",
            Login.PASSWORD,
        ),
        SshClient(
            "pubkey",
            "first contact (accept-new), public-key login with the customer's key",
            Known.NOTHING,
            "accept-new",
            Login.PUBLICKEY,
        ),
        SshClient(
            "pubkey-agent",
            "as pubkey, the key in an ssh-agent forwarded to the server (ssh -A)",
            Known.NOTHING,
            "accept-new",
            Login.PUBLICKEY,
            agent=True,
        ),
        SshClient(
            "git",
            "git clone over SSH, first contact (accept-new), public-key login",
            Known.NOTHING,
            "accept-new",
            Login.PUBLICKEY,
            git=True,
        ),
    )
}
"""Every configuration by name, in the order of the view's columns."""


@dataclass(frozen=True)
class Scratch:
    """A run's own folder (0700) and the files in it."""

    folder: Path

    @property
    def known_hosts(self) -> Path:
        """Where a user's is (the folder is ssh's HOME): OpenSSH's words name it as `~/...`."""
        return self.folder / ".ssh" / "known_hosts"

    @property
    def private_key(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.folder / "id_ed25519.pub"

    @property
    def password(self) -> Path:
        return self.folder / "password"

    @property
    def askpass(self) -> Path:
        return self.folder / "askpass"

    @property
    def asked(self) -> Path:
        """Each prompt the askpass script was called with, a NUL after each (a prompt may span lines)."""
        return self.folder / "asked"

    @property
    def agent_socket(self) -> Path:
        return self.folder / "agent.sock"

    @property
    def clone(self) -> Path:
        """Where git clones the repository."""
        return self.folder / "clone"

    def prepare(self, client: SshClient, keys: SshKeys, password: str) -> None:
        self.known_hosts.parent.mkdir(mode=0o700)
        _write(self.known_hosts, client.known_hosts(keys))
        _write(self.password, password + "\n")
        _write(self.askpass, _askpass_script(self))
        self.askpass.chmod(0o700)
        if client.login is Login.PUBLICKEY:
            _write(self.private_key, keys.customer_key.read_text())
            _write(self.public_key, keys.authorized_key())

    def prompts(self) -> tuple[str, ...]:
        try:
            said = self.asked.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ()
        return tuple(said.split("\0")[:-1])


@dataclass(frozen=True)
class SshRun:
    """One run of the real `ssh`, as the lab read it; the password is masked wherever it appeared."""

    client: SshClient
    argv: tuple[str, ...]
    exit_code: int | None
    """ssh's exit: the command's own status, or 255 for ssh's own failure (git's: 128 when it could not
    read from the remote); None: killed at its time."""
    prompts: tuple[str, ...]
    """What OpenSSH asked through SSH_ASKPASS, in order (a password prompt was answered with it)."""
    words: tuple[str, ...]
    """The lines of its standard error that say something: OpenSSH's warnings and refusals."""
    stdout: str
    """What the command printed, as the client received it (capped)."""
    stderr: str
    duration_ms: float

    @property
    def password_asked(self) -> int:
        """How many times OpenSSH asked for the password (and got it)."""
        return sum(prompt.endswith(PASSWORD_PROMPT) for prompt in self.prompts)


async def run_ssh(
    client: SshClient,
    keys: SshKeys,
    password: str,
    host: str,
    port: int,
    *,
    user: str = CLIENT_ACCOUNT,
    command: str = COMMAND,
    timeout: float = TIMEOUT,
) -> SshRun:
    """Run `client` against `host`:`port` as `user` asking for `command` (git asks for its own).
    Raises `SshSetupError` when its agent or program cannot be started; whatever OpenSSH answers is in
    the result."""
    scratch = Scratch(Path(tempfile.mkdtemp(prefix="mitmlab-ssh-")))  # 0700; short, for the socket
    groups = Groups()
    started = time.perf_counter()
    try:
        scratch.prepare(client, keys, password)
        argv = client.argv(scratch, host, port, user, command)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(scratch.folder),
            "SSH_ASKPASS": str(scratch.askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            **client.env(scratch),
        }
        exit_code: int | None = None
        output: tuple[asyncio.Task[bytes], asyncio.Task[bytes]] | None = None
        try:
            async with asyncio.timeout(timeout):
                if client.agent:
                    await _start_agent(scratch, groups, env)
                    env["SSH_AUTH_SOCK"] = str(scratch.agent_socket)
                ssh = await groups.start(argv, env, scratch.folder)
                output = _read(ssh)
                exit_code = await ssh.wait()
        except TimeoutError:
            exit_code = None  # killed: what it had said by then is kept
        finally:
            await groups.end()
        out, err = (await output[0], await output[1]) if output else (b"", b"")
        duration = (time.perf_counter() - started) * 1000

        def masked(text: str) -> str:
            return text.replace(password, MASK) if password else text

        # the scratch folder is ssh's HOME: "Add correct host key in ~/.ssh/known_hosts", as users read it
        said = err.decode(errors="replace").replace("\r\n", "\n").replace(str(scratch.folder), "~")
        stderr = masked(said)
        return SshRun(
            client=client,
            argv=tuple(masked(arg) for arg in argv),
            exit_code=exit_code,
            prompts=tuple(masked(prompt) for prompt in scratch.prompts()),
            words=words_of(stderr),
            stdout=masked(out.decode(errors="replace")),
            stderr=stderr,
            duration_ms=round(duration, 1),
        )
    finally:
        shutil.rmtree(scratch.folder, ignore_errors=True)


def words_of(stderr: str) -> tuple[str, ...]:
    """The lines of ssh's standard error that say something: OpenSSH frames its loudest warnings in
    `@` (a line of them, and `@    WARNING: ... @`); the frame goes, the words stay."""
    lines = (line.strip().strip("@").strip() for line in stderr.splitlines())
    return tuple(line for line in lines if line)


async def ssh_session(
    state: StateDir, client: SshClient, host: str, port: int, timeout: float = TIMEOUT
) -> events.SshSession:
    """One run as the client role makes it: the state's keys and the customer's password, both events
    in the client's evidence (`program_ran` and `ssh_session`), the latter returned. A program missing
    here: nothing runs, and the event says which."""
    log = state.evidence("client")
    missing = system.missing(client.programs)
    if missing:
        session = events.SshSession(
            client=client.name,
            command=client.command,
            exit_code=None,
            prompts=[],
            words="",
            output="",
            missing=list(missing),
        )
        log.record(session)
        return session
    run = await run_ssh(client, state.ssh_keys(), state.client_password(), host, port, timeout=timeout)
    log.record(
        events.ProgramRan(
            client=client.name,
            argv=list(run.argv),
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
            stdout=run.stdout,
            stderr=run.stderr,
        )
    )
    session = events.SshSession(
        client=client.name,
        command=client.command,
        exit_code=run.exit_code,
        prompts=list(run.prompts),
        words="\n".join(run.words),
        output=run.stdout,
        missing=[],
    )
    log.record(session)
    return session


class Groups:
    """The programs of one run, each leading a process group of its own in a session of its own (no
    controlling terminal: ssh cannot ask anyone but SSH_ASKPASS). `end` kills every group."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SshSetupError(f"could not start {argv[0]}: {exc.strerror or exc}") from None
        self.processes.append(process)
        return process

    async def end(self) -> None:
        """Kill every group (ssh's askpass, whatever is left) and wait for each leader."""
        ending, self.processes = self.processes, []
        for process in ending:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in ending:
            await process.wait()


def _read(process: asyncio.subprocess.Process) -> tuple[asyncio.Task[bytes], asyncio.Task[bytes]]:
    """Its stdout and stderr, each read to the end (capped) by a task of its own: they end when the
    process's group is gone."""
    assert process.stdout is not None and process.stderr is not None
    return asyncio.ensure_future(_capped(process.stdout)), asyncio.ensure_future(_capped(process.stderr))


async def _start_agent(scratch: Scratch, groups: Groups, env: dict[str, str]) -> None:
    """A real ssh-agent on the scratch folder's socket, holding the customer's key. It says where its
    socket is once it listens: that line is its readiness."""
    agent = await groups.start(["ssh-agent", "-D", "-a", str(scratch.agent_socket)], env, scratch.folder)
    assert agent.stdout is not None
    said = await agent.stdout.readline()
    if not said.startswith(b"SSH_AUTH_SOCK="):
        code = await agent.wait()
        raise SshSetupError(f"ssh-agent did not start (exit {code}): {said.decode(errors='replace')}")
    adding = await groups.start(
        ["ssh-add", "-q", str(scratch.private_key)],
        env | {"SSH_AUTH_SOCK": str(scratch.agent_socket)},
        scratch.folder,
    )
    _, err = await adding.communicate()
    if adding.returncode != 0:
        raise SshSetupError(f"ssh-add could not give the agent the key: {err.decode(errors='replace')}")


async def _capped(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_CAP:
            kept += chunk[: OUTPUT_CAP - len(kept)]
    return bytes(kept)


def _write(path: Path, text: str) -> None:
    """A file only this user may read (the folder is 0700 too)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _askpass_script(scratch: Scratch) -> str:
    asked, password = shlex.quote(str(scratch.asked)), shlex.quote(str(scratch.password))
    return f"""#!/bin/sh
# mitm-lab's SSH_ASKPASS: notes each prompt (a NUL after each), answers the password to a password
# prompt only, and "no" to anything else (a host-key question).
printf '%s\\0' "$1" >> {asked}
case "$1" in
    *{shlex.quote(PASSWORD_PROMPT)}) cat {password} ;;
    *) echo no ;;
esac
"""
