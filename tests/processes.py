"""Running `mitmlab` as a real process, as a user would, and waiting for readiness via its port file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from lab.net import free_port
from lab.state import StateDir

__all__ = ["background", "free_port", "mitmdump", "mitmlab", "wait_for_port", "without_privilege"]


def mitmlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


NOBODY = 65534
READ_ONLY = "dac_read_search"
"""The one capability `without_privilege` keeps: reading and listing any file, nothing else."""


def without_privilege(
    *python_args: str, cwd: Path, user: Literal["root", "nobody"] = "root"
) -> subprocess.CompletedProcess[str]:
    """`python PYTHON_ARGS` (this venv's) in `cwd` without the privileges a role captures or makes
    namespaces with, where the tests run as root (CI); as is elsewhere, which has none to drop.

    Every capability goes but CAP_DAC_READ_SEARCH, from the bounding set too, so nothing it runs gets
    one back: CAP_NET_RAW (a packet socket), CAP_NET_ADMIN and CAP_SYS_ADMIN (namespaces) with the
    rest. CAP_DAC_READ_SEARCH stays because the process must read the checkout and its venv, which may
    be in a folder no one else may enter (root's 0700 home, issue 21) or be another user's (sudo):
    becoming nobody alone (as these tests once did) loses them. It lets the process read any file, and
    nothing more: not write, capture, nor make a namespace.

    `user="root"` keeps uid 0: a process that lacks the capability is refused although it is root.
    `user="nobody"` is for what the lab refuses by uid rather than by capability (ARP positioning's
    namespaces); `cwd` is then opened to everyone, for nobody to write in.
    """
    drop: list[str] = []
    if os.geteuid() == 0:
        if user == "nobody":
            drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            cwd.chmod(0o777)
        else:
            drop = ["setpriv"]
        drop += [f"--inh-caps=-all,+{READ_ONLY}", f"--ambient-caps=+{READ_ONLY}"]
        drop += [f"--bounding-set=-all,+{READ_ONLY}"]
    return subprocess.run(
        [*drop, sys.executable, *python_args],
        cwd=cwd,
        env={**os.environ, "HOME": str(cwd), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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


@contextmanager
def mitmdump(
    addon: Path, state: StateDir, confdir: Path, *upstreams: str, options: tuple[str, ...] = ()
) -> Iterator[list[int]]:
    """`mitmdump -s ADDON` in reverse mode in front of each of `upstreams` (`reverse:tcp://HOST:PORT`,
    ...), on free ports; yields them once mitmdump says it listens on each (no sleeping)."""
    ports = [free_port() for _ in upstreams]
    modes = [
        arg
        for upstream, port in zip(upstreams, ports, strict=True)
        for arg in ("--mode", f"{upstream}@127.0.0.1:{port}")
    ]
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mitmdump"),
            "-s",
            str(addon),
            *modes,
            "--set",
            f"lab_state_dir={state.root}",
            "--set",
            f"confdir={confdir}",
            *(arg for option in options for arg in ("--set", option)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        listening = 0
        for line in process.stdout:
            listening += "listening" in line
            if listening == len(upstreams):
                break
        else:
            raise RuntimeError("mitmdump exited before listening")
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=10)
