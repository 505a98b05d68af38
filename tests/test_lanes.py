"""`mitmlab role NAME --lanes N`, as each role's container runs it: every lane answers on its own port
with its own state, a lane whose role dies comes back, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.control import ControlError, request
from lab.net import free_port
from lab.state import StateDir

pytestmark = pytest.mark.loopback


def _status(port: int, secret: str) -> dict[str, object] | None:
    try:
        return asyncio.run(request("127.0.0.1", port, "status", secret=secret, timeout=2))
    except (ControlError, OSError, TimeoutError):
        return None


def _until(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _two_free_ports() -> int:
    """A port p with p and p + 1 free a moment ago: lane i of a role is on its base port + i - 1."""
    while True:
        base = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


def test_lanes_answer_come_back_and_stop_on_sigterm(state: StateDir, tmp_path: Path) -> None:
    base = _two_free_ports()
    ready = tmp_path / "ready"
    options = {
        "--lanes": "2",
        "--state-dir": str(state.root),
        "--lanes-dir": str(tmp_path / "lanes"),
        "--control": f"127.0.0.1:{base}",
        "--listen": "127.0.0.1:0",
        "--ready-file": str(ready),
    }
    arguments = [word for option in options.items() for word in option]
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "lab", "role", "server", *arguments], stderr=subprocess.PIPE, text=True
    )
    try:
        _until(lambda: ready.exists() and ready.read_text().strip())
        assert json.loads(ready.read_text()) == {"lanes": 2}
        secret = state.secret()
        assert all(_status(port, secret) is not None for port in (base, base + 1))
        assert _status(base, "not the secret") is None  # refused without the lab's secret
        assert (tmp_path / "lanes" / "lane-1").is_dir() and (tmp_path / "lanes" / "lane-2").is_dir()

        lane_two = subprocess.run(
            ["pgrep", "-f", "--", f"--control 127.0.0.1:{base + 1}"],
            capture_output=True,
            text=True,
            check=True,
        )
        (pid,) = [int(p) for p in lane_two.stdout.split() if int(p) != supervisor.pid]
        os.kill(pid, signal.SIGKILL)
        _until(lambda: _status(base + 1, secret) is None, timeout=10)
        # The lane is back: a fresh role process, whose start-up (mitmproxy's imports, the state) took
        # over 30 s once in a loaded CI run.
        _until(lambda: _status(base + 1, secret) is not None, timeout=90)
        assert _status(base, secret) is not None  # and the other never went away

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 0
        assert _status(base, secret) is None and _status(base + 1, secret) is None
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    assert supervisor.stderr is not None
    assert "lane 2 of the server role exited" in supervisor.stderr.read()
