"""The attacker role: switching attacks without a restart, the control port under garbage, and a
mitmproxy that keeps serving after clients that misbehave."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from lab.channel.frames import HEADER, FrameType
from lab.channel.protections import NONE, RECOMMENDED
from lab.control import ControlError, ControlServer, request
from lab.roles.attacker import AttackerRole, CannotListen
from lab.roles.client import run_session
from lab.roles.server import BankServer
from lab.state import StateDir
from tests.loopback import raw_exchange
from tests.world import SESSION, bank_behind_attacker, evidence_dicts

pytestmark = pytest.mark.loopback


def attacker_events(state: StateDir) -> list[dict[str, Any]]:
    return evidence_dicts(state, "attacker")


def test_switching_attacks_between_sessions_without_a_restart(state: StateDir) -> None:
    async def scenario() -> None:
        async with bank_behind_attacker(state, NONE) as (role, attacker_port, _):
            control = ControlServer(role.control_handlers(), secret=state.secret())
            control_port = await control.start("127.0.0.1", 0)
            try:
                for attack_id in ("eavesdrop", "replay", None):
                    answer = await request(
                        "127.0.0.1", control_port, "attack", {"id": attack_id}, secret=state.secret()
                    )
                    assert answer["attack"] == attack_id
                    await run_session(state, "127.0.0.1", attacker_port, NONE, list(SESSION))
                    await request("127.0.0.1", control_port, "idle", secret=state.secret())
                status = await request("127.0.0.1", control_port, "status", secret=state.secret())
                assert status["flows"] == 3
            finally:
                await control.stop()

    asyncio.run(scenario())
    by_attack = {e["attack"] for e in attacker_events(state) if e["event"] in ("read", "injected")}
    assert by_attack == {"eavesdrop", "replay"}


def test_the_control_port_answers_garbage_and_keeps_working(state: StateDir) -> None:
    async def scenario() -> None:
        role = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", 9))
        await role.start()
        control = ControlServer(role.control_handlers(), secret=state.secret())
        port = await control.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = []
            for line in (
                b"hello?\n",
                b"[1, 2]\n",
                b'{"cmd": "fly"}\n',
                b"\xff\xfe\n",
                b'{"cmd": "status"}\n',  # without the lab's secret
                json.dumps({"cmd": "status", "secret": state.secret()}).encode() + b"\n",
            ):
                writer.write(line)
                answers.append(await reader.readline())
            writer.write(b"x" * 70_000 + b"\n")
            answers.append(await reader.readline())
            assert await reader.read() == b""  # an oversized line closes that connection only
            writer.close()
            assert [b'"ok": false' in a for a in answers] == [True, True, True, True, True, False, True]
            assert b"secret" in answers[4]
            with pytest.raises(ControlError, match="unknown attack 'teleport'"):
                await request("127.0.0.1", port, "attack", {"id": "teleport"}, secret=state.secret())
            with pytest.raises(ControlError, match="has no option"):
                await request(
                    "127.0.0.1",
                    port,
                    "attack",
                    {"id": "replay", "options": {"lab_no_such": 1}},
                    secret=state.secret(),
                )
            assert (await request("127.0.0.1", port, "status", secret=state.secret()))["attack"] is None
        finally:
            await control.stop()
            await role.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("attack_id", ["eavesdrop", "self-signed", "downgrade", "session-replay"])
def test_misbehaving_clients_do_not_stop_the_attacker(state: StateDir, attack_id: str) -> None:
    async def scenario() -> None:
        server = BankServer(state, RECOMMENDED.without("ca_trust", "transcript"))
        port = await server.start("127.0.0.1", 0)
        serving = asyncio.create_task(server.serve_forever())
        role = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", port))
        attacker_port = await role.start()
        role.switch(attack_id)
        try:
            await raw_exchange(
                attacker_port, HEADER.pack(FrameType.HANDSHAKE, 200) + b"\x01abc", read_timeout=2
            )
            await raw_exchange(attacker_port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", read_timeout=2)
            await raw_exchange(attacker_port, b"GET / HTTP/1.1\r\n\r\n", read_timeout=2)
            result = await run_session(
                state,
                "127.0.0.1",
                attacker_port,
                RECOMMENDED.without("ca_trust", "transcript"),
                list(SESSION),
            )
            assert result.replies[-1]["balance"] == 900
            await role.idle()
        finally:
            await role.stop()
            serving.cancel()
            await server.stop()

    asyncio.run(scenario())
    assert not [e for e in attacker_events(state) if e["event"] == "addon_error"]


def test_a_port_in_use_is_a_clear_error(state: StateDir) -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            role = AttackerRole(state, ("127.0.0.1", taken.getsockname()[1]), ("127.0.0.1", 9))
            with pytest.raises(CannotListen):
                await role.start()

    asyncio.run(scenario())
