"""Running a client's job: each invocation a process in the visit's own directory, bounded in time and
ended (its whole process group), its output kept within a cap; each navigation in one of the client
role's browsers (`lab.clients.browser`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lab import system
from lab.clients.adapters import Adapter
from lab.clients.browser import Browsers
from lab.clients.job import Invocation, Navigation, Ran, Reading, Target

STEP_TIMEOUT: Final = 20.0
"""Seconds one program may run before it is killed (each client also has its own, shorter, limit)."""
KEYLOG: Final = "keylog.txt"
"""The visit's TLS key log (NSS format), in its directory: every client program's, and the browser's
lines written during the visit."""
OUTPUT_CAP: Final = 1 << 20
"""Bytes of stdout or stderr kept from one program: a client that floods gives no more."""


@dataclass(frozen=True)
class Visit:
    reading: Reading
    ran: tuple[Ran, ...]
    missing: tuple[str, ...] = ()
    """The programs it needs that are not installed here (then nothing ran)."""


async def visit(
    adapter: Adapter, target: Target, browsers: Browsers, step_timeout: float = STEP_TIMEOUT
) -> Visit:
    """Run `adapter`'s job against `target`."""
    missing = system.missing(adapter.programs)
    if missing:
        return Visit(Reading(False, f"not installed: {', '.join(missing)}"), (), missing)
    target.workdir.mkdir(parents=True, exist_ok=True)
    job = adapter.job(target)
    ran: list[Ran] = []
    try:
        step = next(job)
        while True:
            if isinstance(step, Navigation):
                done = await browsers.navigate(step, target.workdir / KEYLOG)
            else:
                done = await run_program(step, target.workdir, step_timeout)
            ran.append(done)
            step = job.send(done)
    except StopIteration as finished:
        return Visit(finished.value, tuple(ran))


async def run_program(invocation: Invocation, workdir: Path, timeout: float) -> Ran:
    for relative, content in invocation.files.items():
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    env = {**os.environ, "SSLKEYLOGFILE": str(workdir / KEYLOG), **_in(workdir, invocation.env)}
    started = time.perf_counter()
    try:
        process = await asyncio.create_subprocess_exec(
            *invocation.argv,
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so that all of it can be ended
        )
    except OSError as exc:
        return Ran(invocation, 127, "", f"could not start {invocation.argv[0]}: {exc}", 0.0)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    stdout = asyncio.ensure_future(_capped(process.stdout))
    stderr = asyncio.ensure_future(_capped(process.stderr))
    with contextlib.suppress(OSError):
        process.stdin.write(invocation.stdin)
        await process.stdin.drain()
        process.stdin.close()
    exit_code: int | None
    try:
        exit_code = await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        exit_code = None
    finally:
        _end_group(process)
        await process.wait()
    out, err = await stdout, await stderr
    duration = (time.perf_counter() - started) * 1000
    collected = {name: _read(workdir / name) for name in invocation.collect}
    return Ran(invocation, exit_code, out, err, duration, collected)


def _in(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """Relative paths in the environment (HOME=home) are the visit's own."""
    return {k: str(workdir / v) if k == "HOME" and not os.path.isabs(v) else v for k, v in env.items()}


def _end_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _capped(stream: asyncio.StreamReader) -> str:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_CAP:
            kept += chunk[: OUTPUT_CAP - len(kept)]
    return kept.decode(errors="replace")


def _read(path: Path) -> str:
    try:
        return path.read_bytes()[:OUTPUT_CAP].decode(errors="replace")
    except OSError:
        return ""
