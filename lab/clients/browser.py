"""Chromium driven over the DevTools protocol (Playwright), one browser for each program (the headless
shell or the whole browser) and trust store a lane's client role is asked for, and a fresh browser
context for every visit.

Starting Chromium takes about a second; a context takes a tenth of that and shares no cookie, HSTS
entry or certificate decision with any other. What Chromium trusts lives in its NSS store, under its
HOME, read when it starts: a client whose trust store differs (the careless user's rogue CA) is its
own browser. A browser that crashes or hangs is closed and started again for the next visit; all of
them are closed with the role, and Playwright's driver ends them if the role itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urldefrag

from playwright.async_api import (
    Browser,
    BrowserContext,
    Error,
    Page,
    Playwright,
    Request,
    Response,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeout

from lab.clients.job import Navigation, Ran

HANG_MARGIN: Final = 10.0
"""Seconds past a visit's own time after which the browser counts as hung: closed, started anew."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds a browser gets to close before the lab stops waiting for it (Playwright then kills it)."""
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",  # the lab runs it as whoever runs the lab, root in containers
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-dev-shm-usage",  # a container's /dev/shm is 64 MiB
)
"""Headless, and nothing of Chromium's own fetches: with `MAP * ~NOTFOUND` it dials no one but bank.lab
(docs/tls.md)."""
HSTS_PAGE: Final = "chrome://net-internals/#hsts"
"""Chromium's own page for its HSTS state: its "Add HSTS domain" form is how a context comes to know
bank.lab as a browser that visited it before does, without a visit the attacker could see."""


class BrowserUnavailable(Exception):
    """The browser could not be made ready (its NSS store, or Chromium itself would not start)."""


@dataclass
class _Running:
    key: str
    browser: Browser
    keylog: Path
    keylog_read: int = 0
    """Bytes of the key log already handed to a visit: each visit gets the lines written during it."""
    spares: dict[tuple[str, ...], asyncio.Task[tuple[BrowserContext, Page]]] = field(default_factory=dict)
    """A fresh context for the next visit, made while the lab sets that visit's run up (a new page
    starts a renderer: the slowest part of a visit), by the HSTS hosts it knows."""

    def prepare(self, hsts_known: tuple[str, ...]) -> None:
        if hsts_known not in self.spares:
            spare = asyncio.ensure_future(_fresh(self.browser, hsts_known))
            spare.add_done_callback(_retrieved)
            self.spares[hsts_known] = spare

    async def take(self, hsts_known: tuple[str, ...]) -> tuple[BrowserContext, Page]:
        spare = self.spares.pop(hsts_known, None)
        if spare is not None:
            with contextlib.suppress(Error):  # a spare that failed to be made: make one now
                return await spare
        return await _fresh(self.browser, hsts_known)

    async def discard_spares(self) -> None:
        for spare in self.spares.values():
            spare.cancel()
        for spare in self.spares.values():
            with contextlib.suppress(asyncio.CancelledError, Error):
                context, _ = await spare
                await context.close()
        self.spares.clear()


@dataclass
class _Seen:
    """What the page said during one visit, in the order it said it."""

    failures: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    failed: asyncio.Event = field(default_factory=asyncio.Event)

    def request_failed(self, request: Request) -> None:
        if request.is_navigation_request():
            self.failures.append(f"{request.failure or 'failed'} at {request.url}")
            self.failed.set()

    def response(self, response: Response) -> None:
        """Its status line, where it sends the page on and why; never a URL's fragment, which holds
        what the user typed (it never goes on the wire)."""
        line = f"{response.status} {response.status_text} {urldefrag(response.url).url}"
        if location := response.headers.get("location"):
            line += f" to {urldefrag(location).url}"
        if reason := response.headers.get("non-authoritative-reason"):
            line += f", Non-Authoritative-Reason: {reason}"
        self.responses.append(line)


class Browsers:
    """The client role's browsers, started on first use: `navigate` runs one `Navigation`."""

    def __init__(self, root: Path | None = None, hang_margin: float = HANG_MARGIN) -> None:
        self._playwright: Playwright | None = None
        self._running: dict[str, _Running] = {}
        self._root = root
        """Where the browsers' directory goes (None: the system's temporary directory)."""
        self._home: Path | None = None
        """Each browser's HOME and key log, made with the first browser, removed on close."""
        self._hang_margin = hang_margin
        self._lock = asyncio.Lock()

    @property
    def running(self) -> int:
        """How many browsers are up now."""
        return sum(running.browser.is_connected() for running in self._running.values())

    async def navigate(self, navigation: Navigation, keylog: Path) -> Ran:
        """One visit in a fresh context; the key log lines written meanwhile are appended to `keylog`."""
        started = time.perf_counter()
        async with self._lock:  # a lane's client visits one at a time; two would share the key log
            try:
                running = await self._browser(navigation)
            except BrowserUnavailable as exc:
                return Ran(navigation, 127, "", str(exc), _ms(started))
            seen = _Seen()
            exit_code: int | None = 1
            page_text = ""
            try:
                visiting = _visit(running, navigation, seen)
                page_text, ended = await asyncio.wait_for(visiting, navigation.timeout + self._hang_margin)
                exit_code = 0 if ended else None
            except TimeoutError:
                seen.failures.append(
                    f"Chromium stopped answering; the lab closed it after {_ms(started) / 1000:.0f} s"
                )
                await self._drop(running.key, hung=True)
            except Error as exc:
                if running.browser.is_connected():
                    seen.failures.append(_first_line(exc))
                else:
                    seen.failures.append(f"Chromium ended in the middle of the visit: {_first_line(exc)}")
                    await self._drop(running.key)
            _hand_over_keylog(running, keylog)
            if running.browser.is_connected() and self._running.get(running.key) is running:
                running.prepare(navigation.hsts_known)
            stderr = "\n".join(seen.failures)
            if exit_code is None and not seen.failures:
                stderr = f"did not reach {navigation.arrived} within {navigation.timeout:g} s"
            collected = {"responses": "\n".join(seen.responses)}
            return Ran(navigation, exit_code, page_text, stderr, _ms(started), collected)

    async def close(self) -> None:
        """Close every browser (each given CLOSE_TIMEOUT), then Playwright's driver, which kills any left."""
        for key in list(self._running):
            running = self._running.pop(key)
            await running.discard_spares()
            with contextlib.suppress(Error, TimeoutError):
                await asyncio.wait_for(running.browser.close(), CLOSE_TIMEOUT)
        if self._playwright is not None:
            with contextlib.suppress(Error, TimeoutError):
                await asyncio.wait_for(self._playwright.stop(), CLOSE_TIMEOUT)
            self._playwright = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    async def _browser(self, navigation: Navigation) -> _Running:
        try:
            key = _key(navigation)
        except OSError as exc:
            raise BrowserUnavailable(f"the lab could not read a CA for Chromium's NSS store: {exc}") from None
        running = self._running.get(key)
        if running is not None and running.browser.is_connected():
            return running
        await self._drop(key)
        if self._home is None:
            self._home = Path(tempfile.mkdtemp(prefix="mitmlab-browsers-", dir=self._root))
        home = self._home / key
        shutil.rmtree(home, ignore_errors=True)
        await _nss_store(home, navigation.trusted)
        if self._playwright is None:
            try:
                self._playwright = await async_playwright().start()
            except Exception as exc:  # Playwright's own: a bare Exception when its driver cannot start
                raise BrowserUnavailable(f"Playwright's driver would not start: {exc}") from None
        keylog = home / "keylog.txt"
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=shutil.which(navigation.program) or navigation.program,
                args=[*CHROMIUM_FLAGS, navigation.resolver_rules],
                env={
                    "HOME": str(home),
                    "SSLKEYLOGFILE": str(keylog),
                    "PATH": os.environ.get("PATH", os.defpath),
                },
                timeout=navigation.timeout * 1000,
            )
        except Error as exc:
            raise BrowserUnavailable(f"Chromium would not start: {_first_line(exc)}") from None
        self._running[key] = _Running(key, browser, keylog)
        return self._running[key]

    async def _drop(self, key: str, hung: bool = False) -> None:
        """Close the browser; a hung one is killed first, every process of it, since it would answer
        no request to close (and Playwright's driver ends it only when the role ends)."""
        running = self._running.pop(key, None)
        if running is not None:
            if hung and self._home is not None:
                _kill_processes_of(self._home / key)
            await running.discard_spares()
            with contextlib.suppress(Error, TimeoutError):
                await asyncio.wait_for(running.browser.close(), CLOSE_TIMEOUT)


async def _visit(running: _Running, navigation: Navigation, seen: _Seen) -> tuple[str, bool]:
    """The page the visit ended on, and whether it ended (False: the time ran out)."""
    context, page = await running.take(navigation.hsts_known)
    try:
        page.on("requestfailed", seen.request_failed)
        page.on("response", seen.response)
        ended = await _go(page, navigation, seen)
        try:
            text = await page.content()
        except Error:
            if not seen.failed.is_set():
                raise
            text = ""  # Chromium is putting up its error page: the failure's words tell
    except Exception:
        await _close(context)
        raise
    # Not reached when the visit is cancelled (out of time): the caller kills the browser, and the
    # context with it, without waiting on a browser that may not answer.
    await _close(context)
    return text, ended


async def _close(context: BrowserContext) -> None:
    with contextlib.suppress(Error, TimeoutError):
        await asyncio.wait_for(context.close(), CLOSE_TIMEOUT)


async def _fresh(browser: Browser, hsts_known: tuple[str, ...]) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    page = await context.new_page()
    for name in hsts_known:
        await _know_hsts(page, name)
    return context, page


def _retrieved(spare: asyncio.Future[tuple[BrowserContext, Page]]) -> None:
    """A spare whose browser went away fails unread: its error is the visit's to meet, not the log's."""
    if not spare.cancelled():
        spare.exception()


async def _go(page: Page, navigation: Navigation, seen: _Seen) -> bool:
    """Open the address and wait until the page holds `navigation.arrived` or a navigation fails (the
    visit ended: True), or the time runs out (False)."""
    deadline = time.monotonic() + navigation.timeout
    try:
        await page.goto(navigation.url, timeout=navigation.timeout * 1000)
    except PlaywrightTimeout:
        return False
    except Error as exc:
        if not seen.failures:  # Chromium's own words for a failed navigation are in `failures` already
            seen.failures.append(_first_line(exc))
        return True
    arrived = asyncio.ensure_future(page.wait_for_selector(navigation.arrived, timeout=0))
    failed = asyncio.ensure_future(seen.failed.wait())
    try:
        await asyncio.wait(
            [arrived, failed],
            timeout=max(deadline - time.monotonic(), 0),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiting in (arrived, failed):
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Error):
                await waiting
    return seen.failed.is_set() or (
        arrived.done() and not arrived.cancelled() and arrived.exception() is None
    )


async def _know_hsts(page: Page, name: str) -> None:
    await page.goto(HSTS_PAGE)
    await page.fill("#hsts-view-add-input", name)
    await page.click("#hsts-view-add-submit")
    await page.fill("#hsts-view-query-input", name)
    await page.click("#hsts-view-query-submit")
    await page.wait_for_function(
        "name => document.querySelector('#hsts-view-query-output').textContent"
        ".includes('dynamic_sts_domain: ' + name)",
        arg=name,
    )


async def _nss_store(home: Path, trusted: tuple[Path, ...]) -> None:
    """Chromium's NSS store under `home`, trusting `trusted` as CAs for TLS servers."""
    store = home / ".pki" / "nssdb"
    store.mkdir(parents=True, mode=0o700)
    steps: list[tuple[str, ...]] = [("certutil", "-N", "-d", f"sql:{store}", "--empty-password")]
    steps += [
        ("certutil", "-A", "-d", f"sql:{store}", "-t", "C,,", "-n", f"ca-{number}", "-i", str(path))
        for number, path in enumerate(trusted)
    ]
    for argv in steps:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            raise BrowserUnavailable(f"the lab could not make Chromium's NSS store: {exc}") from None
        _, stderr = await process.communicate()
        if process.returncode != 0:
            said = stderr.decode(errors="replace").strip().splitlines() or [f"exit code {process.returncode}"]
            raise BrowserUnavailable(f"the lab could not make Chromium's NSS store: {said[-1]}")


def _key(navigation: Navigation) -> str:
    """One browser per program, trust store (the CAs' contents, not their paths) and resolver rules."""
    digest = hashlib.sha256(f"{navigation.program}\n{navigation.resolver_rules}".encode())
    for path in navigation.trusted:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _kill_processes_of(home: Path) -> None:
    """SIGKILL a browser, all of it: the processes whose HOME is `home` (the browser's main process, and
    its crash handler in a session of its own; `_browser` gives each browser a HOME of its own), each
    with its process group, where it leads one: Playwright starts the browser as a group's leader, and
    its zygotes, renderers and GPU process, whose environment no longer shows HOME, are in that group."""
    mark = b"\0HOME=" + bytes(home) + b"\0"
    ours = os.getpgrp()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            with contextlib.suppress(OSError):
                if mark in b"\0" + (entry / "environ").read_bytes() + b"\0":
                    group = os.getpgid(pid)
                    if group == pid and group != ours:
                        os.killpg(group, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)


def _hand_over_keylog(running: _Running, keylog: Path) -> None:
    try:
        with running.keylog.open("rb") as log:
            log.seek(running.keylog_read)
            lines = log.read()
    except FileNotFoundError:
        return
    complete = lines[: lines.rfind(b"\n") + 1]  # a line being written is the next visit's
    running.keylog_read += len(complete)
    with keylog.open("ab") as out:
        out.write(complete)


def _first_line(exc: Error) -> str:
    said = str(exc).strip().splitlines()
    return said[0] if said else type(exc).__name__


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
