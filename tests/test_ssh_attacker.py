"""The attacker role's SSH port (`lab.mitm.ssh`): the real `ssh` through it to the real sshd, with each
SSH attack loaded as an addon file (`addons/host_key_swap.py`, `addons/rogue_host_ca.py`), with none or
`eavesdrop` (a passive pass-through), switched between connections without a restart, and stopped.
What is asserted is the attacker's evidence, as the checker will read it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.net import Address, free_port
from lab.roles.attacker import AttackerRole, CannotListen
from lab.ssh.keys import cert_authority_line
from lab.ssh.sshd import Sshd
from lab.state import StateDir
from tests.test_ssh import (
    ADDED,
    COMMAND,
    LOOPBACK,
    PASSWORD,
    STRICT_UNKNOWN,
    Client,
    need_openssh,
)
from tests.world import evidence_dicts

SSH_EVENTS = {"ssh_presenting", "ssh_upstream", "read", "captured", "addon_error", "attack_failed"}


@pytest.fixture
def sshd(state: StateDir, tmp_path: Path) -> Iterator[Sshd]:
    need_openssh()
    with Sshd(tmp_path / "server", state.ssh_keys(), Address(LOOPBACK, free_port()), PASSWORD) as server:
        yield server


@pytest.fixture
def client(state: StateDir, tmp_path: Path) -> Client:
    return Client(tmp_path / "client", state.ssh_keys())


@asynccontextmanager
async def attacker(state: StateDir, upstream: Address) -> AsyncIterator[tuple[AttackerRole, int]]:
    """The attacker role with its SSH port in front of `upstream` (the lab channel's upstream unused)."""
    role = AttackerRole(state, (LOOPBACK, 0), (LOOPBACK, 9), ssh_listen=(LOOPBACK, 0), ssh_upstream=upstream)
    await role.start()
    port = role.ssh_port()
    assert port is not None
    try:
        yield role, port
    finally:
        await role.stop()


def ssh_events(state: StateDir) -> list[dict[str, Any]]:
    return [e for e in evidence_dicts(state, "attacker") if e["event"] in SSH_EVENTS]


def reads(events: list[dict[str, Any]], secret: str) -> list[Any]:
    return [e["value"] for e in events if e["event"] == "read" and e["secret"] == secret]


def fingerprint(state: StateDir, path: Path) -> str:
    keys = state.ssh_keys()
    found: str = keys.public(path).get_fingerprint()
    return found


def captured_bytes(event: dict[str, Any], from_client: bool) -> bytes:
    return b"".join(bytes.fromhex(r["body"]) for r in event["records"] if r["from_client"] == from_client)


@pytest.mark.loopback
@pytest.mark.root
def test_host_key_swap_on_first_contact_reads_the_password_and_the_command(
    state: StateDir, sshd: Sshd, client: Client
) -> None:
    async def play() -> Any:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch("host-key-swap")
            outcome = await client.run(port)
            await role.idle()
            return outcome

    outcome = asyncio.run(play())
    assert outcome.code == 0 and ADDED in outcome.stderr, outcome.stderr
    assert sshd.commands() == [COMMAND] and outcome.stdout == "hello from alice\n"
    events = ssh_events(state)
    assert {e["attack"] for e in events} == {"host-key-swap"} and {e["flow"] for e in events} == {1}
    [presenting] = [e for e in events if e["event"] == "ssh_presenting"]
    assert presenting["host_key"] == fingerprint(state, state.ssh_keys().attacker_key)
    assert presenting["host_key"] != fingerprint(state, state.ssh_keys().server_key)
    assert presenting["ca"] is None
    assert reads(events, "password") == [PASSWORD] and reads(events, "command") == [COMMAND]
    [output] = reads(events, "output")
    assert "hello from alice\n" in output and "to-stderr" in output
    assert [(e["user"], e["method"], e["accepted"]) for e in events if e["event"] == "ssh_upstream"] == [
        ("alice", "password", True)
    ]
    assert {e["how"] for e in events if e["event"] == "read"} == {"as_the_relay"}


@pytest.mark.loopback
@pytest.mark.root
def test_rogue_host_ca_is_refused_by_a_client_that_trusts_the_lab_ca_strictly(
    state: StateDir, sshd: Sshd, client: Client
) -> None:
    keys = state.ssh_keys()
    trusted = cert_authority_line(keys.public(keys.lab_ca))

    async def play() -> tuple[Any, Any, Any]:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch("rogue-host-ca")
            strict = await client.run(port, known_hosts=trusted, strict="yes")
            await role.idle()
            direct = await client.run(sshd.listen.port, known_hosts=trusted, strict="yes")
            careless = await client.run(port, known_hosts=trusted, strict="accept-new")
            await role.idle()
            return strict, direct, careless

    strict, direct, careless = asyncio.run(play())
    assert strict.code == 255 and STRICT_UNKNOWN in strict.stderr and strict.asked == []
    assert direct.code == 0, direct.stderr  # the same client accepts the real server's certificate
    assert careless.code == 0, careless.stderr  # and without strict checking the relay gets in
    events = ssh_events(state)
    by_flow = {flow: [e for e in events if e["flow"] == flow] for flow in (1, 2)}
    rogue_ca = fingerprint(state, keys.rogue_ca)
    for flow in (1, 2):
        [presenting] = [e for e in by_flow[flow] if e["event"] == "ssh_presenting"]
        assert presenting["ca"] == rogue_ca != fingerprint(state, keys.lab_ca)
        assert presenting["attack"] == "rogue-host-ca"
    assert reads(by_flow[1], "password") == [] and not [e for e in by_flow[1] if e["event"] == "ssh_upstream"]
    assert reads(by_flow[2], "password") == [PASSWORD]
    assert sshd.commands() == [COMMAND, COMMAND]  # the direct run and the careless one


@pytest.mark.loopback
@pytest.mark.root
@pytest.mark.parametrize("attack_id", [None, "eavesdrop"])
def test_without_an_ssh_attack_the_bytes_pass_and_are_kept_without_the_password(
    state: StateDir, sshd: Sshd, client: Client, attack_id: str | None
) -> None:
    async def play() -> Any:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch(attack_id)
            outcome = await client.run(port)
            await role.idle()
            return outcome

    outcome = asyncio.run(play())
    assert outcome.code == 0 and sshd.commands() == [COMMAND], outcome.stderr
    events = ssh_events(state)
    assert [e["event"] for e in events] == ["captured"] and events[0]["attack"] == (attack_id or "")
    sent, answered = captured_bytes(events[0], True), captured_bytes(events[0], False)
    assert sent.startswith(b"SSH-2.0-OpenSSH_") and answered.startswith(b"SSH-2.0-OpenSSH_")
    assert len(sent) > 1000 and len(answered) > 1000  # key exchange, login and the session, encrypted
    for secret in (PASSWORD.encode(), b"echo hello", b"hello from alice"):
        assert secret not in sent + answered


@pytest.mark.loopback
@pytest.mark.root
def test_attacks_switch_between_connections_without_a_restart(
    state: StateDir, sshd: Sshd, client: Client
) -> None:
    order = ["host-key-swap", None, "rogue-host-ca", "eavesdrop", "host-key-swap"]

    async def play() -> list[int]:
        codes = []
        async with attacker(state, sshd.listen) as (role, port):
            for attack_id in order:
                role.switch(attack_id)
                codes.append((await client.run(port)).code)
                await role.idle()
            assert role.status()["ssh_connections"] == len(order)
        return codes

    assert asyncio.run(play()) == [0] * len(order)
    events = ssh_events(state)
    kinds = {
        flow: (
            {e["attack"] for e in events if e["flow"] == flow},
            {e["event"] for e in events if e["flow"] == flow},
        )
        for flow in range(1, len(order) + 1)
    }
    relayed = {"ssh_presenting", "read", "ssh_upstream"}
    assert kinds == {
        1: ({"host-key-swap"}, relayed),
        2: ({""}, {"captured"}),
        3: ({"rogue-host-ca"}, relayed),
        4: ({"eavesdrop"}, {"captured"}),
        5: ({"host-key-swap"}, relayed),
    }
    assert reads(events, "password") == [PASSWORD] * 3
    assert sshd.commands() == [COMMAND] * len(order)


@pytest.mark.loopback
@pytest.mark.root
def test_an_addon_whose_hook_raises_is_an_addon_error_and_the_port_goes_on(
    state: StateDir, sshd: Sshd, client: Client, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        '"""An SSH addon with a bug."""\n\n\nclass Broken:\n    def ssh_identity(self, keys):\n'
        '        raise RuntimeError("no key today")\n\n\naddons = [Broken()]\n'
    )

    async def play() -> tuple[Any, Any]:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch_to_file(broken)
            failed = await client.run(port)
            await role.idle()
            role.switch("host-key-swap")
            worked = await client.run(port)
            await role.idle()
            return failed, worked

    failed, worked = asyncio.run(play())
    assert failed.code == 255 and worked.code == 0, worked.stderr
    events = ssh_events(state)
    assert [(e["flow"], e["error"]) for e in events if e["event"] == "addon_error"] == [
        (1, "RuntimeError: no key today")
    ]
    assert reads(events, "password") == [PASSWORD]


@pytest.mark.loopback
def test_a_real_server_out_of_reach_is_the_attackers_failure_not_a_crash(state: StateDir) -> None:
    """No sshd at all: the relay cannot read its banner; the client's connection is closed, the port
    stays open."""

    async def play() -> list[bytes]:
        async with attacker(state, Address(LOOPBACK, free_port())) as (role, port):
            role.switch("host-key-swap")
            answers = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
                answers.append(await asyncio.wait_for(reader.read(), 10))
                writer.close()
            await role.idle()
            return answers

    assert asyncio.run(play()) == [b"", b""]
    events = ssh_events(state)
    assert [(e["event"], e["step"], e["flow"]) for e in events] == [
        ("attack_failed", "upstream", 1),
        ("attack_failed", "upstream", 2),
    ]
    assert "unreachable" in events[0]["reason"]


@pytest.mark.loopback
def test_an_ssh_port_that_is_taken_is_a_cannot_listen(state: StateDir) -> None:
    async def play() -> None:
        with socket.socket() as taken:
            taken.bind((LOOPBACK, 0))
            taken.listen()
            role = AttackerRole(
                state,
                (LOOPBACK, 0),
                (LOOPBACK, 9),
                ssh_listen=(LOOPBACK, taken.getsockname()[1]),
                ssh_upstream=Address(LOOPBACK, 9),
            )
            with pytest.raises(CannotListen, match="cannot listen for SSH"):
                await role.start()
            assert role.ssh_port() is None

    asyncio.run(play())


@pytest.mark.loopback
@pytest.mark.root
def test_stop_ends_a_session_in_flight_and_leaves_no_listener_and_no_task(
    state: StateDir, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Any, int, set[asyncio.Task[Any]]]:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch("host-key-swap")
            session = asyncio.create_task(client.run(port, command="sleep 60"))
            deadline = time.monotonic() + 10
            while not sshd.commands():
                assert time.monotonic() < deadline and not session.done(), "the session did not start"
                await asyncio.sleep(0.02)
            await role.stop()
            outcome = await asyncio.wait_for(session, 10)
        left = asyncio.all_tasks() - {asyncio.current_task()}
        return outcome, port, left

    outcome, port, left = asyncio.run(play())
    assert outcome.code == 255 and left == set()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2).close()
    # the relay's own connection to sshd ended with it (a command without a terminal, here `sleep`, is
    # left running by OpenSSH when its connection goes, relay or not)
    deadline = time.monotonic() + 10
    while "Disconnected from user alice" not in sshd.log_path.read_text():
        assert time.monotonic() < deadline, "the relay's connection to sshd outlived the attacker"
        time.sleep(0.05)


@pytest.mark.loopback
@pytest.mark.root
def test_reset_ends_a_leftover_session_and_numbers_connections_afresh(
    state: StateDir, sshd: Sshd, client: Client
) -> None:
    async def play() -> tuple[Any, dict[str, Any], Any]:
        async with attacker(state, sshd.listen) as (role, port):
            role.switch("host-key-swap")
            leftover = asyncio.create_task(client.run(port, command="sleep 60"))
            deadline = time.monotonic() + 10
            while not sshd.commands():
                assert time.monotonic() < deadline and not leftover.done(), "the session did not start"
                await asyncio.sleep(0.02)
            status = await role.control_handlers()["reset"]({})
            ended = await asyncio.wait_for(leftover, 10)
            role.switch("host-key-swap")
            await client.run(port)
            await role.idle()
            return ended, status, role.status()

    ended, reset_status, status = asyncio.run(play())
    assert ended.code == 255 and reset_status["attack"] is None and status["ssh_connections"] == 1
    events = ssh_events(state)  # the leftover's evidence went with the reset: the next run's only
    assert {e["flow"] for e in events} == {1} and reads(events, "command") == [COMMAND]
