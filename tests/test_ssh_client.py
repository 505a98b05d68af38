"""The SSH stack's victims (`lab.clients.ssh`): every client configuration runs the real `ssh` against
the real sshd and logs in; through the relay each gives OpenSSH's own answer for its settings (first
contact gives the password away, a known key refuses before any password, strict checking with a host
CA refuses, a public-key login is read but not run, a forwarded agent lets the relay in). The client
role runs it over its control port and records it; a run is bounded in time and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from lab import events, system
from lab.clients.browser import Browsers
from lab.clients.ssh import (
    COMMAND,
    MASK,
    REPOSITORY,
    SSH_CLIENTS,
    Known,
    Login,
    Scratch,
    SshRun,
    run_ssh,
    words_of,
)
from lab.control import ControlError, request
from lab.evidence import parse_lines
from lab.net import Address, free_port
from lab.roles.client import control_handlers
from lab.roles.ready import wait_until_ready
from lab.ssh.keys import openssh_line
from lab.ssh.relay import Attack, CommandRead, PasswordRead, RelayRecord, SshRelay
from lab.ssh.sshd import LoginAccepted, Sshd
from lab.stacks import EVERY_PROTECTION
from lab.state import StateDir
from tests.test_ssh import need_openssh

LOOPBACK: Final = "127.0.0.1"
PROMPT: Final = "alice@server.lab's password: "
OUTPUT: Final = "transfer 100 to bob\n"
"""What `COMMAND` prints on the real server."""
ADDED: Final = "Warning: Permanently added 'server.lab' (ED25519) to the list of known hosts."
CHANGED: Final = "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"
STRICT_UNKNOWN: Final = "No ED25519 host key is known for server.lab and you have requested strict checking."


def run(state: StateDir, name: str, port: int, command: str = COMMAND) -> SshRun:
    password = state.client_password()
    return asyncio.run(
        run_ssh(SSH_CLIENTS[name], state.ssh_keys(), password, LOOPBACK, port, command=command)
    )


# Without programs: the configurations, their arguments, the askpass script, OpenSSH's words.


def test_the_configurations_are_the_views_columns_in_order() -> None:
    assert list(SSH_CLIENTS) == [
        "tofu",
        "known-key",
        "known-key-no",
        "host-ca",
        "host-ca-accept-new",
        "pubkey",
        "pubkey-agent",
        "git",
    ]
    assert {name: c.programs for name, c in SSH_CLIENTS.items() if c.programs != ("ssh",)} == {
        "pubkey-agent": ("ssh", "ssh-agent", "ssh-add"),
        "git": ("ssh", "git"),
    }
    assert all(c.summary and "\n" not in c.summary for c in SSH_CLIENTS.values())


def test_password_logins_offer_no_key_and_key_logins_no_password(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    for client in SSH_CLIENTS.values():
        argv = client.argv(scratch, "10.0.0.2", 2222, "alice", COMMAND)
        if client.git:
            assert argv[:3] == ["git", "clone", "ssh://alice@10.0.0.2:2222/~/bank.git"]
            assert shlex.split(client.env(scratch)["GIT_SSH_COMMAND"]) == client.ssh(scratch)
            argv = client.ssh(scratch)  # git adds the port, the destination and its command
        else:
            assert argv[-3:] == ["2222", "alice@10.0.0.2", COMMAND] and client.env(scratch) == {}
        assert argv[:3] == ["ssh", "-F", "/dev/null"]
        options = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o")
        assert options["HostKeyAlias"] == "server.lab"
        assert options["StrictHostKeyChecking"] == client.strict
        assert options["GlobalKnownHostsFile"] == "/dev/null"
        if client.login is Login.PASSWORD:
            assert options["PubkeyAuthentication"] == "no" and "IdentityFile" not in options
        else:
            assert options["PasswordAuthentication"] == "no" and options["IdentitiesOnly"] == "yes"
        assert ("-A" in argv) == client.agent
    agent = SSH_CLIENTS["pubkey-agent"].argv(scratch, "h", 22, "alice", COMMAND)
    assert f"IdentityFile={scratch.public_key}" in agent and f"IdentityAgent={scratch.agent_socket}" in agent


def test_known_hosts_hold_nothing_the_real_key_or_the_lab_ca(state: StateDir) -> None:
    keys = state.ssh_keys()
    lines = {name: client.known_hosts(keys) for name, client in SSH_CLIENTS.items()}
    assert lines["tofu"] == lines["pubkey"] == ""
    server = openssh_line(keys.public(keys.server_key))
    assert lines["known-key"] == lines["known-key-no"] == f"server.lab {server}\n"
    assert lines["host-ca"].startswith("@cert-authority server.lab ssh-ed25519 ")
    protections = {name: client.host_key_protection for name, client in SSH_CLIENTS.items()}
    assert {name: p for name, p in protections.items() if p} == {
        "known-key": "pinning",
        "known-key-no": "pinning",
        "host-ca": "ca_trust",
        "host-ca-accept-new": "ca_trust",
    }


def test_the_askpass_script_answers_the_password_to_a_password_prompt_only(
    state: StateDir, tmp_path: Path
) -> None:
    password = state.client_password()
    scratch = Scratch(tmp_path / "run")
    scratch.folder.mkdir(mode=0o700)
    scratch.prepare(SSH_CLIENTS["pubkey"], state.ssh_keys(), password)
    question = (
        "The authenticity of host 'server.lab' can't be established.\n"
        "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    )
    answers = [
        subprocess.run([scratch.askpass, prompt], capture_output=True, text=True, check=True).stdout
        for prompt in (PROMPT, question)
    ]
    assert answers == [password + "\n", "no\n"]
    assert scratch.prompts() == (PROMPT, question)  # a prompt over two lines stays one
    files = [scratch.known_hosts, scratch.password, scratch.askpass, scratch.private_key]
    assert {path.stat().st_mode & 0o777 for path in files} == {0o600, 0o700}
    assert scratch.private_key.stat().st_mode & 0o777 == 0o600  # or ssh refuses the key


def test_words_keep_what_openssh_says_and_drop_its_frame() -> None:
    stderr = (
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
        "\n"
        "Host key verification failed.\n"
    )
    assert words_of(stderr) == (CHANGED, "Host key verification failed.")


# The real OpenSSH: sshd as root in its namespace, the real ssh in each configuration.


@pytest.fixture
def sshd(state: StateDir, tmp_path: Path) -> Iterator[Sshd]:
    need_openssh()
    listen = Address(LOOPBACK, free_port())
    with Sshd(tmp_path / "server", state.ssh_keys(), listen, state.client_password()) as server:
        if shutil.which("git"):
            server.seed_repository(REPOSITORY, tmp_path / "work")
        yield server


def need_programs(name: str) -> None:
    """OpenSSH is required where root is (`need_openssh`); git, for the `git` configuration, is not."""
    if missing := system.missing(SSH_CLIENTS[name].programs):
        pytest.skip(f"not installed here: {', '.join(missing)}")


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("name", list(SSH_CLIENTS))
def test_every_configuration_logs_in_to_the_real_server_and_runs_the_command(
    name: str, state: StateDir, sshd: Sshd
) -> None:
    need_programs(name)
    client = SSH_CLIENTS[name]
    done = run(state, name, sshd.listen.port)
    assert done.exit_code == 0, done.words
    assert done.stdout == ("" if client.git else OUTPUT) and sshd.commands() == [client.command]
    assert done.prompts == ((PROMPT,) if client.login is Login.PASSWORD else ())
    assert done.password_asked == (1 if client.login is Login.PASSWORD else 0)
    # a host certificate from the trusted CA is accepted as it is: nothing is added to known_hosts
    assert (ADDED in done.words) == (client.known is Known.NOTHING)
    assert [r.method for r in sshd.records() if isinstance(r, LoginAccepted)] == [client.login.value]
    assert state.client_password() not in " ".join(done.argv) + done.stderr


@dataclass(frozen=True)
class Expected:
    """What OpenSSH does in a configuration when the relay (host-key-swap) answers for the server."""

    exit_code: int
    said: str
    """A line of its words."""
    password_read: bool
    ran: bool
    """The command ran on the real server."""


THROUGH_THE_RELAY: Final = {
    "tofu": Expected(0, ADDED, password_read=True, ran=True),
    "known-key": Expected(255, CHANGED, password_read=False, ran=False),
    "known-key-no": Expected(
        255,
        "Password authentication is disabled to avoid man-in-the-middle attacks.",
        password_read=False,
        ran=False,
    ),
    "host-ca": Expected(255, STRICT_UNKNOWN, password_read=False, ran=False),
    "host-ca-accept-new": Expected(0, ADDED, password_read=True, ran=True),
    "pubkey": Expected(255, "Connection to 127.0.0.1 closed by remote host.", password_read=False, ran=False),
    "pubkey-agent": Expected(0, ADDED, password_read=False, ran=True),
    "git": Expected(128, "fatal: Could not read from remote repository.", password_read=False, ran=False),
}


@asynccontextmanager
async def relaying(state: StateDir, sshd: Sshd) -> AsyncIterator[tuple[SshRelay, int]]:
    relay = SshRelay.for_attack(Attack.HOST_KEY_SWAP, state.ssh_keys(), sshd.listen)
    port = await relay.start(LOOPBACK)
    try:
        yield relay, port
    finally:
        await relay.close()


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("name", list(THROUGH_THE_RELAY))
def test_through_the_relay_each_configuration_answers_as_openssh_does(
    name: str, state: StateDir, sshd: Sshd
) -> None:
    need_programs(name)
    password = state.client_password()
    client = SSH_CLIENTS[name]

    async def play() -> tuple[SshRun, list[RelayRecord]]:
        async with relaying(state, sshd) as (relay, port):
            done = await run_ssh(SSH_CLIENTS[name], state.ssh_keys(), password, LOOPBACK, port)
            return done, relay.records

    done, records = asyncio.run(play())
    expected = THROUGH_THE_RELAY[name]
    assert done.exit_code == expected.exit_code and expected.said in done.words, done.words
    read = [r for r in records if isinstance(r, PasswordRead)]
    assert read == ([PasswordRead(1, "alice", password)] if expected.password_read else [])
    assert done.password_asked == expected.password_read  # no password is typed where OpenSSH refused
    assert sshd.commands() == ([client.command] if expected.ran else [])
    assert done.stdout == (OUTPUT if expected.ran else "")
    if client.login is Login.PUBLICKEY and not client.agent:  # read, not run
        read_command = [r for r in records if isinstance(r, CommandRead)]
        assert read_command == [CommandRead(1, "alice", client.command)]
    if name == "known-key":
        assert "Add correct host key in ~/.ssh/known_hosts to get rid of this message." in done.words
        assert "Host key verification failed." in done.words and done.prompts == ()


@pytest.mark.loopback
@pytest.mark.root
def test_a_password_the_server_prints_is_masked(state: StateDir, sshd: Sshd) -> None:
    password = state.client_password()
    done = run(state, "tofu", sshd.listen.port, command=f"echo {password}; echo {password} >&2")
    assert done.exit_code == 0 and done.stdout == MASK + "\n" and MASK in done.words, done.words
    assert password not in done.stdout + done.stderr + " ".join(done.words + done.argv + done.prompts)


def lingering(folder: Path) -> list[str]:
    """Command lines of processes anywhere on this machine that name `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in line:
                found.append(line)
    return found


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("name", ["tofu", "pubkey-agent"])
def test_a_run_killed_at_its_time_leaves_no_process_and_no_file(
    name: str, state: StateDir, open_scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that never says its banner: ssh waits ConnectTimeout (5 s) for it; the lab's 1 s comes
    first. The scratch folder is made under `open_scratch`, so its processes can be found by it."""
    need_openssh()
    monkeypatch.setattr("tempfile.tempdir", str(open_scratch))
    seen: list[list[str]] = []

    async def play() -> SshRun:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(lingering(open_scratch))  # ssh (and its agent) while they run
            await reader.read()
            writer.close()

        silent = await asyncio.start_server(hold, LOOPBACK, 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            return await run_ssh(SSH_CLIENTS[name], state.ssh_keys(), "pw", LOOPBACK, port, timeout=1.0)
        finally:
            silent.close()

    done = asyncio.run(play())
    assert done.exit_code is None and 1000 <= done.duration_ms < 4000
    running = {line.split()[0] for line in seen[0]}
    assert running == ({"ssh", "ssh-agent"} if name == "pubkey-agent" else {"ssh"})
    assert lingering(open_scratch) == [] and list(open_scratch.iterdir()) == []


# The client role's `ssh` command.


def ssh_command(state: StateDir, params: dict[str, Any]) -> dict[str, Any]:
    """The client role's `ssh` handler, called in this process."""

    async def call() -> dict[str, Any]:
        return await control_handlers(state, Browsers())["ssh"](params)

    return asyncio.run(call())


def test_an_unknown_configuration_or_bad_parameters_are_refused(state: StateDir) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        (
            {"client": "telnet", "host": LOOPBACK, "port": 22},
            "no SSH client 'telnet'; SSH clients are tofu, ",
        ),
        ({"client": "tofu", "host": LOOPBACK}, '"port" \\(integer\\)'),
        ({"client": "tofu", "host": LOOPBACK, "port": 22, "timeout": 0}, '"timeout"'),
    ]
    for params, words in bad:
        with pytest.raises(ControlError, match=words):
            ssh_command(state, params)
    assert not state.evidence_path("client").exists()  # nothing ran, nothing recorded


def test_where_ssh_is_not_installed_nothing_runs_and_the_evidence_says_so(
    state: StateDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no program in it
    answer = ssh_command(state, {"client": "pubkey-agent", "host": LOOPBACK, "port": 22})
    assert answer == {"outcome": "not_installed", "missing": ["ssh", "ssh-agent", "ssh-add"]}
    lines = state.evidence_path("client").read_text().splitlines()
    recorded, invalid = parse_lines("client", lines, EVERY_PROTECTION)
    assert not invalid and [type(e) for e in recorded] == [events.SshSession]
    assert isinstance(recorded[0], events.SshSession) and recorded[0].exit_code is None


@pytest.mark.loopback
@pytest.mark.root
def test_the_client_role_runs_ssh_over_its_control_port_and_records_it(
    state: StateDir, sshd: Sshd, tmp_path: Path
) -> None:
    async def play() -> tuple[dict[str, Any], list[str]]:
        ready = tmp_path / "ready"
        with (tmp_path / "role.log").open("wb") as log:
            role = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lab", "role", "client", "--control", f"{LOOPBACK}:0",
                "--state-dir", str(state.root), "--ready-file", str(ready),
                stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        try:
            port = json.loads(await wait_until_ready(ready, role, 60))["control"]
            secret = state.secret()
            with pytest.raises(ControlError, match="no SSH client 'nope'"):
                await request(LOOPBACK, port, "ssh", {"client": "nope"}, secret=secret)
            params = {"client": "tofu", "host": LOOPBACK, "port": sshd.listen.port}
            answer = await request(LOOPBACK, port, "ssh", params, secret=secret)
            taken = await request(LOOPBACK, port, "evidence", {"take": True}, secret=secret)
            await request(LOOPBACK, port, "shutdown", secret=secret)
            async with asyncio.timeout(10):
                assert await role.wait() == 0
            return answer, taken["lines"]
        finally:
            if role.returncode is None:
                role.kill()
                await role.wait()

    answer, lines = asyncio.run(play())
    assert answer == {"ok": True, "outcome": "ran", "exit_code": 0}
    assert sshd.commands() == [COMMAND]
    recorded, invalid = parse_lines("client", lines, EVERY_PROTECTION)
    assert not invalid
    ran = [e for e in recorded if isinstance(e, events.ProgramRan)]
    sessions = [e for e in recorded if isinstance(e, events.SshSession)]
    assert [(e.client, e.argv[0], e.exit_code, e.stdout) for e in ran] == [("tofu", "ssh", 0, OUTPUT)]
    assert [(e.client, e.command, e.exit_code, e.prompts, e.output, e.missing) for e in sessions] == [
        ("tofu", COMMAND, 0, [PROMPT], OUTPUT, [])
    ]
    assert sessions[0].words == ADDED
    assert state.client_password() not in "".join(lines)
