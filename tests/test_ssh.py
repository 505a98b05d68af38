"""The SSH stack's parts: keys and host certificates, sshd's log read as records, the real OpenSSH sshd
in its private namespace (root only), and the real `ssh` through the relay in each configuration of
issue 23, asserting OpenSSH's own verdicts. Each refusal has its twin: the same client accepts the real
server, so what refused the relay is the protection, not the client."""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

import pytest
from asyncssh.public_key import SSHOpenSSHCertificate

from lab.net import Address, free_port
from lab.ssh.keys import SERVER_NAME, SshKeys, cert_authority_line, known_host_line, openssh_line
from lab.ssh.relay import (
    AgentUsed,
    Attack,
    ClientLeft,
    CommandRead,
    OutputRead,
    PasswordRead,
    PublicKeyRead,
    RelayRecord,
    SessionRelayed,
    SshRelay,
    UpstreamAccepted,
    UpstreamRefused,
    read_banner,
)
from lab.ssh.sshd import (
    Account,
    KeyModeError,
    LineReader,
    Listening,
    LoginAccepted,
    LoginFailed,
    SessionStarted,
    Sshd,
    SshdExitedError,
    SshdRecord,
    parse_journal,
    parse_line,
)
from lab.ssh.tap import SshTap
from tests.conftest import need_root

LOOPBACK: Final = "127.0.0.1"
PASSWORD: Final = "correct horse 7"
COMMAND: Final = "echo hello from $(id -un); echo to-stderr >&2"
CHANGED: Final = "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"
ADDED: Final = "Warning: Permanently added 'server.lab' (ED25519) to the list of known hosts."
STRICT_UNKNOWN: Final = "No ED25519 host key is known for server.lab and you have requested strict checking."
CLIENT_TIMEOUT: Final = 30.0

T = TypeVar("T")


def of(kind: type[T], records: list[RelayRecord] | list[SshdRecord]) -> list[T]:
    return [record for record in records if isinstance(record, kind)]


# Without programs or root: sshd's words, the namespace's files, the keys.


def test_sshd_log_lines_become_records() -> None:
    peer = Address(LOOPBACK, 40000)
    assert parse_line("Server listening on 127.0.0.1 port 2222.") == Listening(LOOPBACK, 2222)
    assert parse_line("Accepted password for alice from 127.0.0.1 port 40000 ssh2") == LoginAccepted(
        "alice", "password", peer, None
    )
    line = "Accepted publickey for alice from 127.0.0.1 port 40000 ssh2: ED25519 SHA256:abc+/="
    assert parse_line(line) == LoginAccepted("alice", "publickey", peer, "SHA256:abc+/=")
    line = "Failed publickey for alice from 127.0.0.1 port 40000 ssh2: ED25519 SHA256:abc"
    assert parse_line(line) == LoginFailed("alice", "publickey", peer, "SHA256:abc", invalid_user=False)
    line = "Failed password for invalid user bob from 127.0.0.1 port 40000 ssh2"
    assert parse_line(line) == LoginFailed("bob", "password", peer, None, invalid_user=True)
    line = "Starting session: shell on pts/0 for alice from 127.0.0.1 port 40000 id 0"
    assert parse_line(line) == SessionStarted("alice", "shell", peer)
    line = "Starting session: command for alice from 127.0.0.1 port 40000 id 0"
    assert parse_line(line) == SessionStarted("alice", "command", peer)
    for other in ('Connection from 127.0.0.1 port 1 on 127.0.0.1 port 2 rdomain ""', "Postponed x", ""):
        assert parse_line(other) is None


def test_the_log_is_read_by_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "sshd.log"
    reader = LineReader(log)
    assert reader.read() == []  # not there yet
    log.write_bytes(b"Server listening on 127.0.0.1 port 2222.\nAccepted pass")
    assert reader.read() == ["Server listening on 127.0.0.1 port 2222."]
    with log.open("ab") as file:
        file.write(b"word for alice from 127.0.0.1 port 1 ssh2\n")
    assert reader.read() == ["Accepted password for alice from 127.0.0.1 port 1 ssh2"]
    assert reader.read() == []


def test_the_journal_keeps_commands_whole_and_leaves_out_an_unfinished_one() -> None:
    assert parse_journal(b"echo 1\0printf 'a\nb'\0ech") == ["echo 1", "printf 'a\nb'"]
    assert parse_journal(b"") == []


def test_the_customer_replaces_an_account_of_the_same_name_inside_the_namespace() -> None:
    account = Account("alice", 61000, 61000)
    table = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
    rows = account.with_account(table, account.passwd_line()).splitlines()
    assert rows[0].startswith("root:") and len(rows) == 2
    assert rows[1] == "alice:x:61000:61000:mitm-lab customer:/home/alice:/home/.lab/shell"
    # empty aging fields: a 0 in "last changed" makes sshd demand a new password
    assert account.shadow_line("$6$salt$hash") == "alice:$6$salt$hash:::::::\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SshKeys:
    return SshKeys.make(tmp_path_factory.mktemp("ssh") / "keys", datetime.datetime.now(datetime.UTC))


def test_keys_are_private_and_each_certificate_names_the_server_and_its_own_ca(keys: SshKeys) -> None:
    assert keys.folder.stat().st_mode & 0o777 == 0o700
    assert {path.stat().st_mode & 0o777 for path in keys.folder.iterdir()} == {0o600}
    lab_ca, rogue_ca = keys.public(keys.lab_ca), keys.public(keys.rogue_ca)
    for certificate, host, ca, other in (
        (keys.server_certificate, keys.server_key, lab_ca, rogue_ca),
        (keys.attacker_certificate, keys.attacker_key, rogue_ca, lab_ca),
    ):
        cert = keys.certificate(certificate)
        assert isinstance(cert, SSHOpenSSHCertificate)
        assert list(cert.principals) == [SERVER_NAME]
        assert cert.key.public_data == keys.public(host).public_data
        assert cert.signing_key.public_data == ca.public_data != other.public_data
    assert keys.private(keys.server_key).public_data != keys.private(keys.attacker_key).public_data


def test_known_hosts_lines_pin_a_key_or_trust_a_ca(keys: SshKeys) -> None:
    server = keys.public(keys.server_key)
    assert known_host_line(server) == f"server.lab {openssh_line(server)}\n"
    assert openssh_line(server).startswith("ssh-ed25519 AAAA") and len(openssh_line(server).split()) == 2
    ca = keys.public(keys.lab_ca)
    assert cert_authority_line(ca) == f"@cert-authority server.lab {openssh_line(ca)}\n"


# The real OpenSSH: sshd as root in its namespace, ssh as the customer runs it.


def need_openssh() -> None:
    need_root()
    missing = [name for name in ("/usr/sbin/sshd", "ssh", "ssh-agent", "ssh-add") if not shutil.which(name)]
    if missing:
        if os.environ.get("MITMLAB_REQUIRE_NAMESPACES"):
            pytest.fail(f"not installed: {missing} (Debian's openssh-server and openssh-client)")
        pytest.skip(f"not installed here: {missing}")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    asked: list[str]
    """The prompts SSH_ASKPASS was called with (the password prompt, a host-key question)."""


class Client:
    """The real `ssh`, non-interactive as FIELD-NOTES says: no config file, its own known_hosts, the
    server's name as HostKeyAlias, the password from SSH_ASKPASS, stdin /dev/null, bounded in time."""

    def __init__(self, folder: Path, keys: SshKeys) -> None:
        self.folder = folder
        self.keys = keys
        folder.mkdir(mode=0o700)
        self.askpass = folder / "askpass"
        (folder / "password").write_text(PASSWORD + "\n")
        self.askpass.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {folder}/asked\ncat {folder}/password\n')
        self.askpass.chmod(0o700)
        self.runs = 0

    async def run(
        self,
        port: int,
        *,
        known_hosts: str = "",
        strict: Literal["yes", "no", "accept-new"] = "accept-new",
        login: Literal["password", "publickey"] = "password",
        agent: Path | None = None,
        forward_agent: bool = False,
        command: str = COMMAND,
    ) -> Outcome:
        self.runs += 1
        known = self.folder / f"known_hosts.{self.runs}"
        known.write_text(known_hosts)
        asked = self.folder / "asked"
        asked.unlink(missing_ok=True)
        if login == "password":
            auth = ["-o", "PubkeyAuthentication=no"]
        else:
            # with an agent holding the same key, ssh has the agent sign
            auth = ["-o", "IdentitiesOnly=yes", "-i", str(self.keys.customer_key)]
            auth += ["-o", "PasswordAuthentication=no"]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.folder), "SSH_ASKPASS": str(self.askpass)}
        env |= {"SSH_ASKPASS_REQUIRE": "force"} | ({"SSH_AUTH_SOCK": str(agent)} if agent else {})
        process = await asyncio.create_subprocess_exec(
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            f"StrictHostKeyChecking={strict}",
            "-o",
            f"HostKeyAlias={SERVER_NAME}",
            "-o",
            "ConnectTimeout=5",
            *auth,
            *(["-A"] if forward_agent else []),
            "-p",
            str(port),
            f"alice@{LOOPBACK}",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        prompts = asked.read_text().splitlines() if asked.exists() else []
        assert process.returncode is not None
        return Outcome(process.returncode, out.decode(), err.decode().replace("\r\n", "\n"), prompts)


@pytest.fixture
def sshd(keys: SshKeys, tmp_path: Path) -> Iterator[Sshd]:
    need_openssh()
    with Sshd(tmp_path / "server", keys, Address(LOOPBACK, free_port()), PASSWORD) as server:
        yield server


@pytest.fixture
def client(keys: SshKeys, tmp_path: Path) -> Client:
    return Client(tmp_path / "client", keys)


@asynccontextmanager
async def relaying(attack: Attack, keys: SshKeys, sshd: Sshd) -> AsyncIterator[tuple[SshRelay, int]]:
    relay = SshRelay.for_attack(attack, keys, sshd.listen)
    port = await relay.start(LOOPBACK)
    try:
        yield relay, port
    finally:
        await relay.close()


def real_key(keys: SshKeys) -> str:
    return known_host_line(keys.public(keys.server_key))


def lab_ca(keys: SshKeys) -> str:
    return cert_authority_line(keys.public(keys.lab_ca))


def ran_for_alice(outcome: Outcome, sshd: Sshd) -> bool:
    """The command ran on the real server as the customer, and its output reached the client."""
    return sshd.commands() == [COMMAND] and outcome.stdout == "hello from alice\n"


@pytest.fixture
def agent(keys: SshKeys, tmp_path: Path) -> Iterator[Path]:
    """A real ssh-agent holding the customer's key (its socket)."""
    need_openssh()
    path = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline and process.poll() is None, "ssh-agent did not start"
            time.sleep(0.01)
        env = {"PATH": os.environ["PATH"], "SSH_AUTH_SOCK": str(path)}
        subprocess.run(["ssh-add", "-q", str(keys.customer_key)], env=env, check=True, timeout=10)
        yield path
    finally:
        process.terminate()
        process.wait(10)


def customer_fingerprint(keys: SshKeys) -> str:
    return keys.public(keys.customer_key).get_fingerprint()


def customer_processes(sshd: Sshd) -> list[int]:
    """Processes of the customer's uid, anywhere on this machine."""
    assert sshd.account is not None
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == sshd.account.uid:
                    found.append(int(entry.name))
            except FileNotFoundError:
                continue
    return found


@pytest.mark.loopback
@pytest.mark.root
def test_a_direct_password_login_runs_the_command_and_the_host_gains_no_user(
    keys: SshKeys, client: Client, tmp_path: Path
) -> None:
    need_openssh()
    host_files = {name: Path(name).read_bytes() for name in ("/etc/passwd", "/etc/group", "/etc/shadow")}
    host_home, host_privsep = sorted(os.listdir("/home")), os.path.exists("/run/sshd")
    with Sshd(tmp_path / "server", keys, Address(LOOPBACK, free_port()), PASSWORD) as sshd:
        outcome = asyncio.run(client.run(sshd.listen.port))
        assert outcome.code == 0, outcome.stderr
        assert ran_for_alice(outcome, sshd) and "to-stderr" in outcome.stderr
        assert ADDED in outcome.stderr and outcome.asked == ["alice@server.lab's password: "]
        records = sshd.records()
        assert [(r.user, r.method) for r in of(LoginAccepted, records)] == [("alice", "password")]
        assert [r.kind for r in of(SessionStarted, records)] == ["command"]
        assert {name: Path(name).read_bytes() for name in host_files} == host_files  # while it runs
    assert {name: Path(name).read_bytes() for name in host_files} == host_files
    assert sorted(os.listdir("/home")) == host_home and os.path.exists("/run/sshd") == host_privsep


@pytest.mark.loopback
@pytest.mark.root
def test_a_wrong_password_is_refused_by_the_real_server(sshd: Sshd, client: Client) -> None:
    (client.folder / "password").write_text("wrong\n")
    outcome = asyncio.run(client.run(sshd.listen.port))
    assert outcome.code == 255 and "Permission denied (publickey,password)." in outcome.stderr
    assert sshd.commands() == [] and of(LoginAccepted, sshd.records()) == []
    assert [r.method for r in of(LoginFailed, sshd.records())] == ["password"] * 3  # OpenSSH asks 3 times


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("attack", list(Attack))
def test_first_contact_with_accept_new_gives_the_relay_the_password_and_runs_the_command(
    attack: Attack, keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(attack, keys, sshd) as (relay, port):
            return await client.run(port), relay.records

    outcome, records = asyncio.run(play())
    assert outcome.code == 0 and ADDED in outcome.stderr, outcome.stderr
    assert ran_for_alice(outcome, sshd)
    assert of(PasswordRead, records) == [PasswordRead(1, "alice", PASSWORD)]
    assert of(UpstreamAccepted, records) == [UpstreamAccepted(1, "alice", "password")]
    assert of(CommandRead, records) == [CommandRead(1, "alice", COMMAND)]
    seen = {
        stream: b"".join(r.data for r in of(OutputRead, records) if r.stream == stream)
        for stream in ("stdout", "stderr")
    }
    assert seen == {"stdout": b"hello from alice\n", "stderr": b"to-stderr\n"}
    assert [r.method for r in of(LoginAccepted, sshd.records())] == ["password"]  # the relay, as alice


@pytest.mark.loopback
@pytest.mark.root
def test_through_the_relay_a_wrong_password_is_refused_as_the_real_server_refuses_it(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    (client.folder / "password").write_text("wrong\n")

    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            return await client.run(port), relay.records

    outcome, records = asyncio.run(play())
    assert outcome.code == 255 and "Permission denied (publickey,password)." in outcome.stderr
    assert of(PasswordRead, records) == [PasswordRead(1, "alice", "wrong")] * 3  # read all the same
    assert [r.method for r in of(UpstreamRefused, records)] == ["password"] * 3
    assert [r.method for r in of(LoginFailed, sshd.records())] == ["password"] * 3
    assert sshd.commands() == [] and of(CommandRead, records) == []


@pytest.mark.loopback
@pytest.mark.root
def test_a_known_real_key_with_strict_checking_refuses_the_relay_before_any_password(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord], Outcome]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            through = await client.run(port, known_hosts=real_key(keys), strict="yes")
        return (
            through,
            relay.records,
            await client.run(sshd.listen.port, known_hosts=real_key(keys), strict="yes"),
        )

    through, records, direct = asyncio.run(play())
    assert through.code == 255 and CHANGED in through.stderr, through.stderr
    assert "Host key verification failed." in through.stderr
    assert through.asked == [] and of(PasswordRead, records) == [] and of(CommandRead, records) == []
    assert [r.authenticated for r in of(ClientLeft, records)] == [False]  # the client hung up on it
    assert direct.code == 0 and ran_for_alice(direct, sshd)  # the same client accepts the real server


@pytest.mark.loopback
@pytest.mark.root
def test_a_known_real_key_without_strict_checking_disables_password_login(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord], Outcome]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            through = await client.run(port, known_hosts=real_key(keys), strict="no")
        return (
            through,
            relay.records,
            await client.run(sshd.listen.port, known_hosts=real_key(keys), strict="no"),
        )

    through, records, direct = asyncio.run(play())
    assert through.code == 255 and CHANGED in through.stderr, through.stderr
    assert "Password authentication is disabled to avoid man-in-the-middle attacks." in through.stderr
    assert "Permission denied (publickey,password)." in through.stderr
    assert through.asked == [] and of(PasswordRead, records) == []
    assert direct.code == 0 and ran_for_alice(direct, sshd)


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("attack", list(Attack))
def test_a_host_ca_with_strict_checking_refuses_the_relay_and_accepts_the_real_server(
    attack: Attack, keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord], Outcome]:
        async with relaying(attack, keys, sshd) as (relay, port):
            through = await client.run(port, known_hosts=lab_ca(keys), strict="yes")
        return (
            through,
            relay.records,
            await client.run(sshd.listen.port, known_hosts=lab_ca(keys), strict="yes"),
        )

    through, records, direct = asyncio.run(play())
    assert through.code == 255 and STRICT_UNKNOWN in through.stderr, through.stderr
    assert "Host key verification failed." in through.stderr
    assert through.asked == [] and of(PasswordRead, records) == []
    assert direct.code == 0 and ran_for_alice(direct, sshd)  # its certificate from the lab's CA


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("attack", list(Attack))
def test_a_host_ca_without_strict_checking_does_not_stop_the_relay(
    attack: Attack, keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(attack, keys, sshd) as (relay, port):
            return await client.run(port, known_hosts=lab_ca(keys), strict="accept-new"), relay.records

    outcome, records = asyncio.run(play())
    assert outcome.code == 0 and ADDED in outcome.stderr, outcome.stderr
    assert ran_for_alice(outcome, sshd) and of(PasswordRead, records) == [PasswordRead(1, "alice", PASSWORD)]


@pytest.mark.loopback
@pytest.mark.root
def test_a_public_key_login_through_the_relay_is_read_but_not_run(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            return await client.run(port, login="publickey"), relay.records

    outcome, records = asyncio.run(play())
    assert outcome.code == 255 and "closed by remote host." in outcome.stderr, outcome.stderr
    customer = keys.public(keys.customer_key)
    assert of(PublicKeyRead, records) == [
        PublicKeyRead(1, "alice", openssh_line(customer), customer.get_fingerprint())
    ]
    assert of(CommandRead, records) == [CommandRead(1, "alice", COMMAND)]  # read...
    assert [r.method for r in of(UpstreamRefused, records)] == ["replayed signature"]
    assert sshd.commands() == [] and of(LoginAccepted, sshd.records()) == []  # ...not run
    # the real server saw the customer's own key with a signature made for another session
    assert [(r.method, r.key) for r in of(LoginFailed, sshd.records())] == [
        ("publickey", customer.get_fingerprint())
    ]
    direct = asyncio.run(client.run(sshd.listen.port, login="publickey"))
    assert direct.code == 0 and ran_for_alice(direct, sshd)


@pytest.mark.loopback
@pytest.mark.root
def test_a_forwarded_agent_lets_the_relay_sign_in_as_the_customer(
    keys: SshKeys, sshd: Sshd, client: Client, agent: Path
) -> None:
    async def play() -> tuple[Outcome, Outcome, list[RelayRecord]]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            kept = await client.run(port, login="publickey", agent=agent)
            forwarded = await client.run(port, login="publickey", agent=agent, forward_agent=True)
            return kept, forwarded, relay.records

    kept, forwarded, records = asyncio.run(play())
    assert kept.code == 255 and forwarded.code == 0, forwarded.stderr
    assert ran_for_alice(forwarded, sshd)  # once: the run that forwarded its agent
    assert of(AgentUsed, records) == [AgentUsed(2, "alice", (customer_fingerprint(keys),))]
    assert of(UpstreamAccepted, records) == [UpstreamAccepted(2, "alice", "forwarded agent")]
    assert [(r.method, r.key) for r in of(LoginAccepted, sshd.records())] == [
        ("publickey", customer_fingerprint(keys))
    ]


@pytest.mark.loopback
@pytest.mark.root
def test_a_changed_key_without_strict_checking_still_hands_a_key_login_to_the_relay(
    keys: SshKeys, sshd: Sshd, client: Client, agent: Path
) -> None:
    """OpenSSH disables password login and agent forwarding, not public-key login: the relay reads the
    command, and cannot run it."""

    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            outcome = await client.run(
                port,
                known_hosts=real_key(keys),
                strict="no",
                login="publickey",
                agent=agent,
                forward_agent=True,
            )
            return outcome, relay.records

    outcome, records = asyncio.run(play())
    assert "Agent forwarding is disabled to avoid man-in-the-middle attacks." in outcome.stderr
    assert outcome.code == 255 and of(AgentUsed, records) == []
    assert of(CommandRead, records) == [CommandRead(1, "alice", COMMAND)] and sshd.commands() == []


@pytest.mark.loopback
@pytest.mark.root
def test_the_relay_greets_with_the_real_servers_banner(keys: SshKeys, sshd: Sshd) -> None:
    async def banners() -> tuple[str, str]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (_, port):
            return await read_banner(sshd.listen), await read_banner(Address(LOOPBACK, port))

    real, relayed = asyncio.run(banners())
    assert real.startswith("OpenSSH_") and relayed == real


@pytest.mark.loopback
@pytest.mark.root
def test_an_eavesdropper_sees_the_banners_but_not_the_password_or_the_command(
    sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, SshTap]:
        tap = SshTap(sshd.listen)
        port = await tap.start(LOOPBACK)
        try:
            return await client.run(port), tap
        finally:
            await tap.close()

    outcome, tap = asyncio.run(play())
    assert outcome.code == 0 and ran_for_alice(outcome, sshd)  # the session did pass the tap
    sent, answered = tap.seen("to server"), tap.seen("to client")
    assert sent.startswith(b"SSH-2.0-OpenSSH_") and answered.startswith(b"SSH-2.0-OpenSSH_")
    for secret in (PASSWORD.encode(), b"echo hello", b"hello from alice"):
        assert secret not in sent + answered


@pytest.mark.loopback
@pytest.mark.root
def test_stopping_sshd_ends_its_sessions_and_leaves_no_process(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> Outcome:
        session = asyncio.create_task(client.run(sshd.listen.port, command="sleep 60"))
        deadline = time.monotonic() + 10
        while not sshd.commands():  # the customer's login shell noted it, then became `sleep`
            assert time.monotonic() < deadline and not session.done(), "the session did not start"
            await asyncio.sleep(0.02)
        assert customer_processes(sshd)  # the customer's sleep, and sshd's session process
        sshd.stop()
        return await asyncio.wait_for(session, 10)

    outcome = asyncio.run(play())
    assert outcome.code == 255 and sshd.commands() == ["sleep 60"]
    assert customer_processes(sshd) == []


@pytest.mark.loopback
@pytest.mark.root
def test_a_server_that_stops_mid_session_ends_the_relayed_session(
    keys: SshKeys, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Outcome, list[RelayRecord]]:
        async with relaying(Attack.HOST_KEY_SWAP, keys, sshd) as (relay, port):
            session = asyncio.create_task(client.run(port, command="sleep 60"))
            deadline = time.monotonic() + 10
            while not sshd.commands():
                assert time.monotonic() < deadline and not session.done(), "the session did not start"
                await asyncio.sleep(0.02)
            sshd.stop()
            return await asyncio.wait_for(session, 10), relay.records

    outcome, records = asyncio.run(play())
    assert outcome.code == 255 and "closed by remote host." in outcome.stderr, outcome.stderr
    assert customer_processes(sshd) == []
    assert of(SessionRelayed, records) == [SessionRelayed(1, None)]  # no exit status: the server left
    assert [r.authenticated for r in of(ClientLeft, records)] == [True]


@pytest.mark.loopback
@pytest.mark.root
def test_a_host_key_others_may_read_is_refused_before_sshd_starts(keys: SshKeys, tmp_path: Path) -> None:
    need_openssh()
    loose = SshKeys(tmp_path / "keys")
    shutil.copytree(keys.folder, loose.folder)
    loose.server_key.chmod(0o644)
    server = Sshd(tmp_path / "server", loose, Address(LOOPBACK, free_port()), PASSWORD)
    with pytest.raises(KeyModeError, match="0644"):
        server.start()
    assert not server.folder.exists()
    loose.server_key.chmod(0o600)
    with server:  # the same keys, private again: it starts
        assert of(Listening, server.records()) == [Listening(LOOPBACK, server.listen.port)]


@pytest.mark.loopback
@pytest.mark.root
def test_an_sshd_that_cannot_listen_says_so_in_its_own_words(keys: SshKeys, tmp_path: Path) -> None:
    need_openssh()
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        server = Sshd(tmp_path / "server", keys, Address(LOOPBACK, taken.getsockname()[1]), PASSWORD)
        with pytest.raises(SshdExitedError) as refused:
            server.start()
    assert "Address already in use" in refused.value.words and refused.value.code == 255
    assert not any(str(server.folder) in command for command in running_commands())


def running_commands() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return found


@pytest.mark.loopback
@pytest.mark.root
def test_a_privilege_separation_folder_others_may_write_is_refused(keys: SshKeys, tmp_path: Path) -> None:
    """In a mount namespace of the test's own, over a private /run: the host's /run is not touched."""
    need_openssh()
    script = (
        "from pathlib import Path\nfrom lab.net import Address\nfrom lab.ssh.keys import SshKeys\n"
        "from lab.ssh.sshd import PrivsepDirError, Sshd\n"
        "try:\n"
        f"    Sshd(Path({str(tmp_path / 'server')!r}), SshKeys(Path({str(keys.folder)!r})),"
        f" Address({LOOPBACK!r}, 1), 'pw').start()\n"
        "except PrivsepDirError as refused:\n"
        "    print(refused)\n"
    )
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            'mount -t tmpfs test-run /run && mkdir -m 0777 /run/sshd && exec "$0" -c "$1"',
            sys.executable,
            script,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert "/run/sshd must be a folder of root's that nobody else can write" in result.stdout, result.stderr
    assert "mode 0777" in result.stdout and not (tmp_path / "server").exists()
