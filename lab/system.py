"""The system programs the views run, and the Debian packages they come in.

`mitmlab check` brings what its views need before the first run: as root where apt-get exists it
installs what is missing, once (README); elsewhere, or with `--no-install`, a run whose program is
missing is `not-run-here`, and the check prints the install line instead. A package dpkg left half
installed (an install that was cut off) counts as missing, so the next install finishes it.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

PACKAGES: Final = {
    "chromium": "chromium",
    "chromium-headless-shell": "chromium-headless-shell",
    "certutil": "libnss3-tools",
    "curl": "curl",
    "openssl": "openssl",
    "libpcap": "libpcap0.8",
    "libatomic": "libatomic1",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-agent": "openssh-client",
    "ssh-add": "openssh-client",
    "git": "git",
}
"""Debian's package for each program (and library) a view uses: the clients view's real clients
(Chromium trusts a CA through NSS's certutil, and is driven by Playwright's driver, a Node.js that needs
libatomic), libpcap, which compiles the captures' filters, OpenSSH's server and client (lab/ssh/), and
git, which the SSH stack's `git` client runs over SSH."""
DAEMONS: Final = {"openssh-server": "ssh"}
"""Packages whose install would start (and enable) a service, by the service's name: the lab installs
them with services kept from starting (policy-rc.d) and disables the service after, so that an install
for the lab never leaves an SSH server listening on the machine; the lab starts its own sshd."""
POLICY_RC_D: Final = Path("/usr/sbin/policy-rc.d")
LIBRARIES: Final = frozenset({"libpcap", "libatomic"})
"""Names in `PACKAGES` that are shared libraries, found as ctypes finds them (so does scapy)."""
SYSTEM_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""apt-get and dpkg run with the system's PATH, whatever the caller's."""
BROKEN_STATES: Final = frozenset({"half-installed", "unpacked", "half-configured"})
"""dpkg's states of a package an install left unfinished."""
INSTALL_TIMEOUT_S: Final = 1800.0
LOCK_WAIT_S: Final = 300
"""Seconds apt-get waits for another apt or dpkg to let go of its lock."""


class InstallFailed(Exception):
    """apt-get could not install the packages; `log` holds its output."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


def missing(programs: Iterable[str]) -> tuple[str, ...]:
    """Those of `programs` not usable here: not found, or their package half installed."""
    wanted = tuple(dict.fromkeys(programs))
    broken = _half_installed(tuple(sorted({PACKAGES[p] for p in wanted if p in PACKAGES})))
    return tuple(p for p in wanted if not _found(p) or PACKAGES.get(p) in broken)


def install_line(programs: Iterable[str]) -> str | None:
    """The command that installs `programs` on Debian; None when the lab knows no package for them."""
    packages = sorted({PACKAGES[p] for p in programs if p in PACKAGES})
    return f"apt-get install {' '.join(packages)}" if packages else None


def why_not_installable() -> str | None:
    """Why this process cannot install packages; None when it can (root, with apt-get)."""
    if os.geteuid() != 0:
        return "installing needs root"
    if shutil.which("apt-get", path=SYSTEM_PATH) is None:
        return "no apt-get here"
    return None


def install_log() -> Path:
    """A new file, for this user alone, for apt's output."""
    handle, name = tempfile.mkstemp(prefix="mitmlab-install-", suffix=".log")
    os.close(handle)
    return Path(name)


def install(*, packages: list[str], log: Path) -> None:
    """Install `packages` with apt-get, finishing first what dpkg left half done, apt's output in
    `log`; raises InstallFailed when a step fails."""
    env = {**os.environ, "PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive"}
    wait = f"-oDPkg::Lock::Timeout={LOCK_WAIT_S}"  # another apt at work: wait for it, then go on
    steps = [
        *([["dpkg", "--configure", "-a"]] if _interrupted(env) else []),
        ["apt-get", wait, "update"],
        ["apt-get", wait, "install", "-y", *packages],
    ]
    services = [DAEMONS[p] for p in packages if p in DAEMONS]
    try:
        with _services_kept_from_starting(bool(services)):
            _run_steps(steps, env, log)
        if services and shutil.which("systemctl", path=SYSTEM_PATH):
            _run_steps([["systemctl", "disable", "--now", *services]], env, log)
    finally:
        _half_installed.cache_clear()  # dpkg holds something else now, whatever happened


@contextlib.contextmanager
def _services_kept_from_starting(wanted: bool) -> Iterator[None]:
    """Debian's policy-rc.d (exit 101: "action forbidden") for the install, unless one is there."""
    if not wanted or POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# mitm-lab: no service starts while it installs packages\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _run_steps(steps: list[list[str]], env: dict[str, str], log: Path) -> None:
    with log.open("w") as output:
        for argv in steps:
            output.write(f"$ {' '.join(argv)}\n")
            output.flush()
            try:
                done = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
                    timeout=INSTALL_TIMEOUT_S, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise InstallFailed(
                    f"{argv[0]} did not finish within {INSTALL_TIMEOUT_S:g} s (its output: {log})", log
                ) from None
            except OSError as exc:
                raise InstallFailed(f"{argv[0]} could not start: {exc.strerror or exc}", log) from None
            if done.returncode != 0:
                raise InstallFailed(
                    f"`{' '.join(argv)}` failed (exit {done.returncode}): {_last_error(log)} "
                    f"(its output: {log})",
                    log,
                )


def _found(program: str) -> bool:
    if program in LIBRARIES:
        return ctypes.util.find_library(program.removeprefix("lib")) is not None
    return shutil.which(program) is not None


@functools.cache
def _half_installed(names: tuple[str, ...]) -> frozenset[str]:
    """Those of `names` dpkg holds in an unfinished state (none where dpkg is not). Asked once per
    process (a dpkg-query takes tens of milliseconds and a check visits hundreds of times); `install`
    asks again."""
    query = shutil.which("dpkg-query", path=SYSTEM_PATH)
    if not names or query is None:
        return frozenset()
    listed = subprocess.run(
        [query, "-W", "-f=${Package} ${db:Status-Status}\n", *names],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    states = (line.split() for line in listed.stdout.splitlines())
    return frozenset(fields[0] for fields in states if len(fields) == 2 and fields[1] in BROKEN_STATES)


def _interrupted(env: dict[str, str]) -> bool:
    """Whether dpkg holds packages an install left unfinished (`dpkg --audit` lists them)."""
    try:
        audit = subprocess.run(
            ["dpkg", "--audit"], capture_output=True, text=True, env=env, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False  # then apt-get says what is wrong
    return bool(audit.stdout.strip())


def _last_error(log: Path) -> str:
    """apt's own words for what went wrong: its last `E:` line, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[-1]
