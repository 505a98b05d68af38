"""One Chromium per program and trust store, driven over DevTools (`lab.clients.browser`), against the
real HTTPS bank on loopback: each visit a fresh context that inherits nothing from the one before, a
browser killed or stopped in the middle of a visit is that visit's error and is started again for the
next, and none of its processes outlives `close`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from lab.channel.protections import RECOMMENDED
from lab.clients.adapters import CLIENTS
from lab.clients.browser import HANG_MARGIN, Browsers
from lab.clients.job import Navigation, Target
from lab.clients.run import visit
from lab.clients.visit import trust_files
from lab.net import WebPorts
from lab.roles.server import BankServer
from lab.state import CLIENT_ACCOUNT, SERVER_NAME, StateDir

pytestmark = pytest.mark.system
SHELL = "chromium-headless-shell"


def need_chromium() -> None:
    for program in ("chromium", SHELL):
        if not shutil.which(program):
            pytest.fail(f"Debian's {program} is not installed: ./run-tests installs it as root")


def with_bank(
    state: StateDir,
    test: Callable[[WebPorts, Browsers], Coroutine[Any, Any, None]],
    root: Path,
    hang_margin: float = HANG_MARGIN,
) -> None:
    """`test` with the server role's HTTPS bank on loopback and the client role's browsers, closed after."""

    async def run() -> None:
        server = BankServer(state, RECOMMENDED)
        await server.start("127.0.0.1", 0)
        ports = await server.start_web("127.0.0.1")
        browsers = Browsers(root, hang_margin)
        try:
            await test(ports, browsers)
        finally:
            await browsers.close()
            await server.stop()

    need_chromium()
    asyncio.run(run())


def bank_target(state: StateDir, ports: WebPorts, workdir: Path) -> Target:
    return Target(
        "127.0.0.1",
        ports.https,
        ports.http,
        CLIENT_ACCOUNT,
        state.client_password(),
        trust_files(state),
        workdir,
    )


def browser_processes(root: Path) -> dict[int, str]:
    """Chromium's processes whose HOME is under `root` (each browser's HOME is its NSS store's), with
    their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(line.startswith(b"HOME=" + bytes(root)) for line in environ):
            found[int(entry.name)] = command
    return found


def pid_of_launch(command: str) -> bool:
    """The process Playwright started: the browser (or Debian's wrapper script that runs it)."""
    return "--remote-debugging-pipe" in command


def processes_in_group(group: int) -> set[int]:
    """The live (not zombie) processes of a process group."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == group and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def test_each_visit_is_a_fresh_context_of_one_browser(state: StateDir, tmp_path: Path) -> None:
    """The bank sends HSTS and a session cookie to the first visit; the next, in the same browser,
    knows neither: plain HTTP is answered by the bank's own redirect, and /balance is refused."""

    async def test(ports: WebPorts, browsers: Browsers) -> None:
        target = bank_target(state, ports, tmp_path / "visit")
        first = await visit(CLIENTS["chromium"], target, browsers)
        assert first.reading.completed, first.reading.words
        assert len(browser_processes(tmp_path)) > 0
        trusted = (state.ca_cert,)
        again = Navigation(target.url("http"), SHELL, (SERVER_NAME, "127.0.0.1"), trusted, "form", 5)
        plain = await browsers.navigate(again, tmp_path / "keylog.txt")
        assert plain.exit_code == 0
        first_answer = plain.collected["responses"].splitlines()[0]
        assert first_answer.startswith(f"308 Permanent Redirect http://bank.lab:{ports.http}/"), first_answer
        assert "Internal Redirect" not in plain.collected["responses"]
        balance = Navigation(target.url("https", "/balance"), SHELL, again.resolve, trusted, "#balance", 3)
        refused = await browsers.navigate(balance, tmp_path / "keylog.txt")
        assert 'id="balance"' not in refused.stdout
        assert refused.collected["responses"].splitlines()[0].startswith("401 Unauthorized")
        known = await visit(CLIENTS["chromium-hsts"], target, browsers)
        assert known.reading.completed and known.reading.protection == "hsts", known.reading.words
        assert browsers.running == 2, "chromium-hsts is the whole browser: a browser of its own"
        careless = await visit(CLIENTS["chromium-careless"], target, browsers)
        assert careless.reading.completed
        assert browsers.running == 3, "a trust store of its own is a browser of its own"
        keylog = (tmp_path / "visit" / "keylog.txt").read_text()
        assert "CLIENT_TRAFFIC_SECRET_0" in keylog or "CLIENT_RANDOM" in keylog

    with_bank(state, test, tmp_path)
    assert browser_processes(tmp_path) == {}


def test_a_browser_killed_mid_visit_is_that_visits_error_and_the_next_visit_gets_a_new_one(
    state: StateDir, tmp_path: Path
) -> None:
    async def test(ports: WebPorts, browsers: Browsers) -> None:
        target = bank_target(state, ports, tmp_path / "visit")
        assert (await visit(CLIENTS["chromium"], target, browsers)).reading.completed
        never = Navigation(
            target.url("https"), SHELL, (SERVER_NAME, "127.0.0.1"), (state.ca_cert,), "#never", 8
        )
        visiting = asyncio.ensure_future(browsers.navigate(never, tmp_path / "keylog.txt"))
        await asyncio.sleep(1.0)
        main = [
            pid
            for pid, command in browser_processes(tmp_path).items()
            if pid_of_launch(command) and not command.startswith("/bin/sh")  # Debian's wrapper: its child
        ]
        assert len(main) == 1, browser_processes(tmp_path)
        os.kill(main[0], signal.SIGKILL)
        killed = await asyncio.wait_for(visiting, 30)
        assert killed.exit_code == 1
        assert killed.stderr.startswith("Chromium ended in the middle of the visit: "), killed.stderr
        after = await visit(CLIENTS["chromium"], target, browsers)
        assert after.reading.completed, after.reading.words

    with_bank(state, test, tmp_path)
    assert browser_processes(tmp_path) == {}


def test_a_browser_that_hangs_mid_visit_is_killed_that_visits_error_and_the_next_visit_gets_a_new_one(
    state: StateDir, tmp_path: Path
) -> None:
    """Chromium stopped (SIGSTOP, every process of its group) in the middle of a visit answers nothing:
    past the visit's time and the hang margin the lab gives up on it, kills it (no process of it is
    left, stopped or not) and starts another for the next visit."""

    async def test(ports: WebPorts, browsers: Browsers) -> None:
        target = bank_target(state, ports, tmp_path / "visit")
        assert (await visit(CLIENTS["chromium"], target, browsers)).reading.completed
        homes = browser_processes(tmp_path)
        (leader,) = {os.getpgid(pid) for pid in homes if os.getpgid(pid) == pid and pid_of_launch(homes[pid])}
        group = processes_in_group(leader)
        never = Navigation(
            target.url("https"), SHELL, (SERVER_NAME, "127.0.0.1"), (state.ca_cert,), "#never", 2
        )
        visiting = asyncio.ensure_future(browsers.navigate(never, tmp_path / "keylog.txt"))
        await asyncio.sleep(0.5)
        os.killpg(leader, signal.SIGSTOP)
        stopped = await asyncio.wait_for(visiting, 30)
        assert stopped.exit_code == 1
        said = stopped.stderr
        assert said.startswith("Chromium stopped answering; the lab closed it after "), said
        await asyncio.sleep(0.5)  # the kernel reaps what Playwright's driver does not wait for
        assert len(group) > 3, group  # the browser, its zygotes, renderer, GPU and network processes
        assert processes_in_group(leader) == set()
        assert set(browser_processes(tmp_path)).isdisjoint(homes)
        after = await visit(CLIENTS["chromium"], target, browsers)
        assert after.reading.completed, after.reading.words
        assert browsers.running == 1

    with_bank(state, test, tmp_path, hang_margin=1.0)
    assert browser_processes(tmp_path) == {}


def test_a_browser_that_cannot_make_its_trust_store_is_a_reading(state: StateDir, tmp_path: Path) -> None:
    async def test(ports: WebPorts, browsers: Browsers) -> None:
        garbage = tmp_path / "not-a-certificate.pem"
        garbage.write_text("no certificate here\n")
        target = bank_target(state, ports, tmp_path / "visit")
        broken = Navigation(target.url("https"), SHELL, (SERVER_NAME, "127.0.0.1"), (garbage,), "#balance", 5)
        ran = await browsers.navigate(broken, tmp_path / "keylog.txt")
        assert ran.exit_code == 127
        assert ran.stderr.startswith("the lab could not make Chromium's NSS store: "), ran.stderr
        assert (await visit(CLIENTS["chromium"], target, browsers)).reading.completed

    with_bank(state, test, tmp_path)
