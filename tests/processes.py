"""Running `mitmlab` as a real process, as a user would, and waiting for readiness via its port file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.containers import free_port

__all__ = ["background", "free_port", "mitmlab", "wait_for_port"]


def mitmlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for_port(port_file: Path, process: subprocess.Popen[str], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        if process.poll() is not None:
            raise RuntimeError(f"the process exited early: {process.communicate()}")
        time.sleep(0.02)
    raise TimeoutError(f"no port in {port_file} after {timeout} s")


@contextmanager
def background(*args: str, port_file: Path) -> Iterator[int]:
    """Start `mitmlab ARGS --port-file PORT_FILE`; yield the bound port; stop it afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lab", *args, "--port-file", str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield wait_for_port(port_file, process)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
