"""The control port under failure: a handler that crashes answers with the error and the port keeps
serving; a role that hangs up without answering is a `ControlError`, never a JSON traceback. Under a
flood from someone without the secret: refusals are counted past the first few, idle connections
are closed, the connections are capped, and the owner's requests still answer."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.checker.backends import BackendError
from lab.checker.backends.local import LocalBackend
from lab.control import (
    MAX_CONNECTIONS,
    REFUSALS_ONE_BY_ONE,
    ControlError,
    ControlServer,
    Refused,
    request,
)
from lab.events import ControlRefusalsCounted, ControlRefused
from lab.evidence import parse_lines
from lab.roles.ready import wait_until_ready
from lab.stacks import EVERY_PROTECTION
from lab.state import StateDir

pytestmark = pytest.mark.loopback

SECRET = "s3cret"


def test_a_crashing_handler_is_an_error_answer_and_the_port_keeps_serving() -> None:
    async def crash(_: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    async def ping(_: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    async def scenario() -> None:
        control = ControlServer({"crash": crash, "ping": ping}, secret=SECRET)
        port = await control.start("127.0.0.1", 0)
        with pytest.raises(ControlError, match="the role failed: RuntimeError: boom"):
            await request("127.0.0.1", port, "crash", secret=SECRET)
        assert (await request("127.0.0.1", port, "ping", secret=SECRET))["pong"] is True
        await control.stop()

    asyncio.run(scenario())


def test_a_role_that_hangs_up_without_answering() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ControlError, match="no answer to 'status'"):
            await request("127.0.0.1", port, "status", secret=SECRET)
        server.close()

    asyncio.run(scenario())


def test_roles_that_cannot_start_are_a_backend_error_and_nothing_is_left_running(tmp_path: Path) -> None:
    not_a_state = StateDir(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    backend = LocalBackend(not_a_state, tmp_path / "lanes")

    async def scenario() -> None:
        with pytest.raises(BackendError, match="exited at start"):
            await backend.start(2)

    asyncio.run(scenario())
    assert not backend._roles  # every process that did start was stopped


def test_a_request_without_the_labs_secret_is_refused_and_recorded(
    state_template: StateDir, tmp_path: Path
) -> None:
    """A local user who is not the lab's owner can reach 127.0.0.1, but cannot drive the roles."""
    backend = LocalBackend(state_template, tmp_path / "lanes")

    async def scenario() -> None:
        (lane,) = await backend.start(1)
        server = lane.controls["server"]
        try:
            for secret in ("", "guessed", lane.secret[:-1]):
                with pytest.raises(ControlError, match="does not carry this lab's secret"):
                    await request(server.host, server.port, "reset", secret=secret)
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b'{"cmd": "reset"}\n')
            assert b"does not carry this lab's secret" in await reader.readline()
            writer.close()
            answer = await request(server.host, server.port, "evidence", secret=lane.secret)
            recorded, invalid = parse_lines("server", answer["lines"], EVERY_PROTECTION)
            refused = [e for e in recorded if isinstance(e, ControlRefused)]
            assert not invalid and [e.cmd for e in refused] == ["reset"] * 4
            assert all(e.peer.startswith("127.0.0.1:") for e in refused)
        finally:
            await backend.stop()

    asyncio.run(scenario())
    assert oct(state_template.control_secret.stat().st_mode & 0o777) == "0o600"


def test_a_secret_that_is_not_text_is_refused_and_the_port_keeps_serving() -> None:
    async def ping(_: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True}

    refused: list[Refused] = []

    async def scenario() -> list[bytes]:
        control = ControlServer({"ping": ping}, secret=SECRET, on_refused=refused.append)
        port = await control.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for line in (b'{"cmd": "ping", "secret": "\\ud800"}\n', b'{"cmd": "\\udfff", "secret": 7}\n'):
            writer.write(line)
            answers.append(await reader.readline())
        writer.close()
        assert (await request("127.0.0.1", port, "ping", secret=SECRET))["pong"] is True
        await control.stop()
        return answers

    answers = asyncio.run(scenario())
    assert all(b"does not carry this lab's secret" in answer for answer in answers)
    assert [e.cmd for e in refused if isinstance(e, ControlRefused)] == ["ping", "\\udfff"]


async def _ping(_: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True}


def test_refusals_past_the_first_few_are_counted_until_the_owners_next_request() -> None:
    refused: list[Refused] = []
    pings: list[int] = []

    async def ping(_: dict[str, Any]) -> dict[str, Any]:
        pings.append(len(refused))  # what was recorded when the owner's request was carried out
        return {}

    async def scenario() -> None:
        control = ControlServer({"ping": ping}, secret=SECRET, on_refused=refused.append)
        port = await control.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for count in (12, 7):
            writer.write(b'{"cmd": "reset", "secret": "guessed"}\n' * count)
            assert all([b"refused" in await reader.readline() for _ in range(count)])
            await request("127.0.0.1", port, "ping", secret=SECRET)
        writer.write(b'{"cmd": "reset"}\n' * 9)
        assert all([b"refused" in await reader.readline() for _ in range(9)])
        writer.close()
        await control.stop()

    asyncio.run(scenario())
    kinds = [(type(e).__name__, getattr(e, "count", None)) for e in refused]
    one = ("ControlRefused", None)
    assert kinds == [*[one] * 5, ("ControlRefusalsCounted", 7)] + [one] * 5 + [
        ("ControlRefusalsCounted", 2)
    ] + [one] * 5 + [("ControlRefusalsCounted", 4)]  # the last at the port's end
    assert pings == [6, 12]  # each count recorded before the owner's request, not after
    counted = [e for e in refused if isinstance(e, ControlRefusalsCounted)]
    assert all(e.peers == ["127.0.0.1"] for e in counted)


def test_idle_and_half_open_connections_are_closed_after_the_timeout() -> None:
    """The deadline is per line: a connection that sends nothing, or half a line, is closed after it;
    one that sends a line now and then is not."""

    async def scenario() -> tuple[list[float], float]:
        control = ControlServer({"ping": _ping}, secret=SECRET, idle_timeout=0.4)
        port = await control.start("127.0.0.1", 0)
        started = time.monotonic()

        async def closed_after(reader: asyncio.StreamReader) -> float:
            assert await reader.read() == b""
            return time.monotonic() - started

        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        half_reader, half_writer = await asyncio.open_connection("127.0.0.1", port)
        half_writer.write(b'{"cmd": "ping", "secr')
        opened = [idle_writer, half_writer]  # a StreamWriter no one holds closes its connection
        closing = asyncio.gather(closed_after(idle_reader), closed_after(half_reader))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            for _ in range(4):  # a line every 0.25 s: each within the deadline, together well past it
                await asyncio.sleep(0.25)
                writer.write(json.dumps({"cmd": "ping", "secret": SECRET}).encode() + b"\n")
                assert b'"pong": true' in await reader.readline()
            served_until = time.monotonic() - started
            closed = list(await closing)
            await control.stop()
            assert await reader.read() == b""  # stop() closes the connections that wait on their peer
        for opened_writer in opened:
            opened_writer.close()
        return closed, served_until

    closed, served_until = asyncio.run(scenario())
    assert all(0.4 <= after < 1.5 for after in closed), closed
    assert served_until >= 1.0


def test_past_the_cap_the_oldest_waiting_connection_makes_room_but_never_the_owners_request() -> None:
    release = asyncio.Event()

    async def hold(_: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"held": True}

    async def scenario() -> None:
        control = ControlServer({"ping": _ping, "hold": hold}, secret=SECRET, max_connections=3)
        port = await control.start("127.0.0.1", 0)
        async with asyncio.timeout(5):
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0.1)  # all three admitted
            assert (await request("127.0.0.1", port, "ping", secret=SECRET))["pong"] is True
            assert await idle[0][0].read() == b""  # the oldest made room for the owner's request
            held = [asyncio.create_task(request("127.0.0.1", port, "hold", secret=SECRET)) for _ in range(3)]
            await asyncio.sleep(0.2)
            assert await idle[1][0].read() == b"" and await idle[2][0].read() == b""
            with pytest.raises(ControlError, match="busy: 3 requests under way"):
                await request("127.0.0.1", port, "ping", secret=SECRET)
            release.set()
            assert [answer["held"] for answer in await asyncio.gather(*held)] == [True] * 3
            assert (await request("127.0.0.1", port, "ping", secret=SECRET))["pong"] is True
        await control.stop()

    asyncio.run(scenario())


def test_many_refused_lines_on_one_connection_do_not_keep_the_owner_waiting() -> None:
    """Lines already read are served one per turn of the event loop, so the owner's request is not
    served after all of them."""
    refused: list[Refused] = []
    served_first: list[int] = []

    async def ping(_: dict[str, Any]) -> dict[str, Any]:
        served_first.append(_refusals(refused))
        return {}

    async def scenario() -> None:
        control = ControlServer({"ping": ping}, secret=SECRET, on_refused=refused.append)
        port = await control.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b'{"cmd": "reset"}\n' * 3000)
        await request("127.0.0.1", port, "ping", secret=SECRET)
        async with asyncio.timeout(10):
            assert all([b"refused" in await reader.readline() for _ in range(3000)])
        writer.close()
        await control.stop()

    asyncio.run(scenario())
    assert served_first[0] < 1000, f"{served_first[0]} of 3000 refused lines were served before the owner's"
    assert _refusals(refused) == 3000


def _refusals(events: list[Refused]) -> int:
    """How many refusals `events` stand for."""
    return sum(event.count if isinstance(event, ControlRefusalsCounted) else 1 for event in events)


FLOOD = """
import socket, sys
port, requests, connections, idle = map(int, sys.argv[1:])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
refused, line, burst = 0, b'{"cmd": "reset"}\\n', 500
for _ in range(connections):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as flood:
        answers = flood.makefile("rb")
        for _ in range(requests // connections // burst):
            flood.sendall(line * burst)
            refused += sum(b"does not carry this lab's secret" in answers.readline() for _ in range(burst))
closed = 0
for connection in held:
    connection.setblocking(False)
    try:
        closed += connection.recv(1) == b""
    except BlockingIOError:
        pass
print(refused, closed)
"""


def test_a_flood_of_refused_requests_and_idle_connections_leaves_the_owners_check_correct(
    state: StateDir, tmp_path: Path
) -> None:
    """A real client role; someone without the secret holds 300 connections open and sends 20,000
    requests over 4 more, while the owner asks for the role's status and takes its evidence."""
    requests, idle = 20_000, 300
    log = tmp_path / "role.log"

    async def scenario() -> tuple[bytes, list[float], list[str]]:
        ready = tmp_path / "ready"
        with log.open("wb") as output:
            role = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lab", "role", "client", "--control", "127.0.0.1:0",
                "--state-dir", str(state.root), "--ready-file", str(ready),
                stdout=output, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        try:
            port = json.loads(await wait_until_ready(ready, role, 60))["control"]
            secret = state.secret()
            flood = await asyncio.create_subprocess_exec(
                sys.executable, "-c", FLOOD, str(port), str(requests), "4", str(idle),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            flooded = asyncio.create_task(flood.communicate())
            latencies: list[float] = []
            lines: list[str] = []
            async with asyncio.timeout(60):
                while not flooded.done():
                    started = time.monotonic()
                    status = await request("127.0.0.1", port, "status", secret=secret, timeout=5)
                    latencies.append(time.monotonic() - started)
                    assert status == {"ok": True}
                    if len(latencies) % 20 == 0:
                        taken = await request("127.0.0.1", port, "evidence", {"take": True}, secret=secret)
                        lines += taken["lines"]
                    await asyncio.sleep(0.01)
                out, _ = await flooded
            lines += (await request("127.0.0.1", port, "evidence", {"take": True}, secret=secret))["lines"]
            await request("127.0.0.1", port, "shutdown", secret=secret)
            async with asyncio.timeout(10):
                assert await role.wait() == 0
            return out, latencies, lines
        finally:
            if role.returncode is None:
                role.kill()
                await role.wait()

    out, latencies, lines = asyncio.run(scenario())
    refused_answers, idle_closed = map(int, out.split())
    assert refused_answers == requests  # the flood was answered, every request refused
    assert idle_closed >= idle - MAX_CONNECTIONS  # the cap closed the oldest to make room
    assert max(latencies) < 2.0, f"the owner waited up to {max(latencies):.2f} s"
    recorded, invalid = parse_lines("client", lines, EVERY_PROTECTION)
    assert not invalid
    one_by_one = [e for e in recorded if isinstance(e, ControlRefused)]
    counted = [e for e in recorded if isinstance(e, ControlRefusalsCounted)]
    assert _refusals([*one_by_one, *counted]) == requests  # every refusal is in there
    owner_requests = len(latencies) + len(latencies) // 20 + 1
    assert len(one_by_one) <= REFUSALS_ONE_BY_ONE * owner_requests and len(counted) <= owner_requests
    assert len(lines) == len(one_by_one) + len(counted)  # the client did nothing else
    assert all(e.peers == ["127.0.0.1"] for e in counted)
    logged = [line for line in log.read_text().splitlines() if line.startswith("refused ")]
    assert len(logged) == len(lines)  # the role's log is bounded the same way
