"""Several lanes of one role in one container: `mitmlab role NAME --lanes N`.

The checker runs N scenarios at once, each on a lane of its own (a server, an attacker and a client).
In the compose lab every role's container holds all N lanes of that role: lane i is a child process
`mitmlab role NAME` on the base ports + i - 1, with its own copy of the lab's state directory. A child
that dies is started again with a fresh copy, so its lane comes back; SIGTERM stops them all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lab.net import WebPorts
from lab.roles.ready import NotReady, wait_until_ready
from lab.state import StateDir

STARTUP_TIMEOUT: Final = 60.0
RESTART_DELAY: Final = 0.5
STOP_GRACE: Final = 5.0

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class LanePorts:
    """Where lane `number` (from 1) of a role listens: each base port plus number - 1 (port 0, any
    free port, stays 0)."""

    control: Endpoint
    listen: Endpoint
    upstream: Endpoint
    web: WebPorts
    """The HTTPS bank's ports (the server's) or the attacker's in front of them."""
    upstream_web: WebPorts | None = None
    transparent: Endpoint | None = None
    """The attacker's transparent listener, for what ARP positioning redirects to it (docs/arp.md)."""
    services: Mapping[str, int] = field(default_factory=dict)
    """The role's other services by name, on the listen host (`--service`)."""
    upstream_services: Mapping[str, int] = field(default_factory=dict)
    """The attacker's upstream for each, on the upstream host (`--upstream-service`)."""

    def of(self, number: int) -> LanePorts:
        def shifted(endpoint: Endpoint) -> Endpoint:
            host, port = endpoint
            return host, _shift(port, number)

        def shifted_web(ports: WebPorts) -> WebPorts:
            return WebPorts(_shift(ports.https, number), _shift(ports.http, number))

        return LanePorts(
            shifted(self.control),
            shifted(self.listen),
            shifted(self.upstream),
            shifted_web(self.web),
            shifted_web(self.upstream_web) if self.upstream_web else None,
            shifted(self.transparent) if self.transparent else None,
            {name: _shift(port, number) for name, port in self.services.items()},
            {name: _shift(port, number) for name, port in self.upstream_services.items()},
        )


def _shift(port: int, number: int) -> int:
    return port + number - 1 if port else 0


class LanesFailed(Exception):
    """A lane's role could not start."""


class Lanes:
    def __init__(
        self,
        role: str,
        count: int,
        template: StateDir,
        workdir: Path,
        ports: LanePorts,
        web: Endpoint | None = None,
        *,
        web_exposed: bool = False,
    ) -> None:
        self.role = role
        self.count = count
        self.template = template
        self.workdir = workdir
        self.ports = ports
        self.web = web
        """mitmweb's live view, for the first lane's attacker."""
        self.web_exposed = web_exposed
        """The live view may listen beyond loopback (the compose lab's own network)."""
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()

    async def run(self, ready_file: Path | None) -> None:
        """Start every lane, write `ready_file`, keep the lanes running until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)  # a container that Docker restarts keeps its /tmp
        try:
            await asyncio.gather(*(self._start(number) for number in range(1, self.count + 1)))
            if ready_file is not None:
                ready_file.write_text(json.dumps({"lanes": self.count}) + "\n")
            keepers = [asyncio.create_task(self._keep(number)) for number in range(1, self.count + 1)]
            await self._stopping.wait()
            for keeper in keepers:
                keeper.cancel()
        finally:
            await self._stop_all()

    def _args(self, number: int) -> list[str]:
        ports = self.ports.of(number)
        args = [
            "role",
            self.role,
            "--control",
            "{}:{}".format(*ports.control),
            "--listen",
            "{}:{}".format(*ports.listen),
            "--upstream",
            "{}:{}".format(*ports.upstream),
            "--web-ports",
            f"{ports.web.https},{ports.web.http}",
            "--state-dir",
            str(self.workdir / f"lane-{number}"),
            "--ready-file",
            str(self.workdir / f"lane-{number}.ready"),
        ]
        if ports.upstream_web is not None:
            args += ["--upstream-web-ports", f"{ports.upstream_web.https},{ports.upstream_web.http}"]
        if ports.transparent is not None:
            args += ["--transparent", "{}:{}".format(*ports.transparent)]
        args += [f"--service={name}={port}" for name, port in ports.services.items()]
        args += [f"--upstream-service={name}={port}" for name, port in ports.upstream_services.items()]
        if self.web is not None and self.role == "attacker" and number == 1:
            args += ["--web", "{}:{}".format(*self.web)]
            if self.web_exposed:
                args.append("--web-exposed")
        return args

    async def _start(self, number: int) -> None:
        state = self.workdir / f"lane-{number}"
        ready = self.workdir / f"lane-{number}.ready"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(self.template.root, state)
        ready.unlink(missing_ok=True)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lab", *self._args(number), stdin=asyncio.subprocess.DEVNULL
        )
        self._children[number] = child
        try:
            await wait_until_ready(ready, child, STARTUP_TIMEOUT)
        except BaseException as exc:  # a lane that did not start is not left running, half-started
            if child.returncode is None:
                child.kill()
                await child.wait()
            if isinstance(exc, NotReady):
                raise LanesFailed(f"lane {number} of the {self.role} role {exc}") from None
            raise

    async def _keep(self, number: int) -> None:
        """Start the lane again whenever its role exits."""
        while True:
            code = await self._children[number].wait()
            print(
                f"lane {number} of the {self.role} role exited ({code}); starting it again", file=sys.stderr
            )
            await asyncio.sleep(RESTART_DELAY)
            with contextlib.suppress(LanesFailed):
                await self._start(number)

    async def _stop_all(self) -> None:
        running = [child for child in self._children.values() if child.returncode is None]
        for child in running:
            child.terminate()
        if running:
            await asyncio.wait([asyncio.ensure_future(c.wait()) for c in running], timeout=STOP_GRACE)
            for child in running:
                if child.returncode is None:
                    child.kill()
