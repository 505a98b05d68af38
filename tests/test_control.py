"""The control port under failure: a handler that crashes answers with the error and the port keeps
serving; a role that hangs up without answering is a `ControlError`, never a JSON traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lab.checker.backends import BackendError
from lab.checker.backends.local import LocalBackend
from lab.control import ControlError, ControlServer, request
from lab.events import ControlRefused
from lab.evidence import parse_lines
from lab.state import StateDir

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
            recorded, invalid = parse_lines("server", answer["lines"])
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

    refused: list[tuple[str, str]] = []

    async def scenario() -> list[bytes]:
        control = ControlServer({"ping": ping}, secret=SECRET, on_refused=lambda *r: refused.append(r))
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
    assert [cmd for _, cmd in refused] == ["ping", "\\udfff"]
