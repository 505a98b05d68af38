"""The local backend (the default): every role is a process on loopback, `mitmlab role NAME`. With
`namespaces` (root only), each lane's roles are processes in network namespaces of their own on one
bridge (`lab.arp.netns`), so that the attacker can get on the path by ARP poisoning."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lab.arp.netns import LabNetwork
from lab.arp.poison import PositioningError
from lab.checker.backends import BackendError, Lane
from lab.net import Address
from lab.roles.ready import NOT_SERVICES, NotReady, wait_until_ready
from lab.state import StateDir

STARTUP_TIMEOUT = 60.0
LOOPBACK = "127.0.0.1"


@dataclass
class _Roles:
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    network: LabNetwork | None = None


class LocalBackend:
    name = "local"

    def __init__(self, template: StateDir, workdir: Path, *, namespaces: bool = False) -> None:
        self.template = template
        """A complete state directory; each lane gets a copy (certificates are slow to make)."""
        self.workdir = workdir
        self.namespaces = namespaces
        self._roles: dict[int, _Roles] = {}

    async def start(self, lanes: int) -> list[Lane]:
        try:
            return list(await asyncio.gather(*(self._start_lane(n) for n in range(1, lanes + 1))))
        except BaseException:
            await self.stop()  # no role is left behind waiting on its control port
            raise

    async def _start_lane(self, number: int) -> Lane:
        root = self.workdir / f"lane-{number}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(self.template.root, root / "state")
        state = StateDir(root / "state")
        roles = self._roles[number] = _Roles()
        hosts = dict.fromkeys(("server", "attacker", "client"), LOOPBACK)
        if self.namespaces:
            roles.network = LabNetwork.for_lane(number)
            try:
                await asyncio.to_thread(roles.network.create)
            except PositioningError as exc:
                raise BackendError(str(exc)) from None
            hosts = {role: roles.network.address(role) for role in hosts}
        server = await self._spawn(
            roles, root, "server", "--listen", f"{hosts['server']}:0", "--service=ssh=0"
        )
        attacker_spawn = self._spawn(
            roles,
            root,
            "attacker",
            "--listen",
            f"{hosts['attacker']}:0",
            "--upstream",
            f"{hosts['server']}:{server['service']}",
            "--upstream-web-ports",
            f"{server['https']},{server['http']}",
            *(("--service=ssh=0", f"--upstream-service=ssh={server['ssh']}") if "ssh" in server else ()),
            *(("--transparent", f"{hosts['attacker']}:0") if self.namespaces else ()),
        )
        client_spawn = self._spawn(roles, root, "client")
        attacker, client = await asyncio.gather(attacker_spawn, client_spawn)
        ready = {"server": server, "attacker": attacker, "client": client}
        return Lane(
            number=number,
            controls={role: Address(hosts[role], ports["control"]) for role, ports in ready.items()},
            secret=state.secret(),
            services={
                role: {
                    name: Address(hosts[role], port)
                    for name, port in ready[role].items()
                    if name not in NOT_SERVICES and port is not None
                }
                for role in ("server", "attacker")
            },
            network=hosts if self.namespaces else None,
            transparent=attacker.get("transparent"),
        )

    async def _spawn(self, roles: _Roles, root: Path, name: str, *args: str) -> dict[str, int]:
        ready = root / f"{name}.ready"
        ready.unlink(missing_ok=True)
        log = roles.logs[name] = root / f"{name}.log"
        inside = roles.network.exec(name, []) if roles.network else []
        host = roles.network.address(name) if roles.network else LOOPBACK
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *inside,
                sys.executable,
                "-m",
                "lab",
                "role",
                name,
                "--control",
                f"{host}:0",
                "--state-dir",
                str(root / "state"),
                "--ready-file",
                str(ready),
                *args,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        roles.processes[name] = process
        try:
            text = await wait_until_ready(ready, process, STARTUP_TIMEOUT)
        except NotReady as exc:
            raise BackendError(f"the {name} role {exc}: {_tail(log)}") from None
        addresses: dict[str, int] = json.loads(text)
        return addresses

    def pid(self, lane: Lane, role: str) -> int:
        """The process id of one of the lane's roles."""
        return self._roles[lane.number].processes[role].pid

    async def dead_roles(self, lane: Lane, settle: float = 0.0) -> list[str]:
        roles = self._roles.get(lane.number)
        if roles is None:
            return ["server", "attacker", "client"]
        if settle:  # a process killed a moment ago may not have been reaped yet
            waits = [
                asyncio.ensure_future(p.wait()) for p in roles.processes.values() if p.returncode is None
            ]
            if waits:
                await asyncio.wait(waits, timeout=settle)
                for wait in waits:
                    wait.cancel()
        return [
            f"{name} (exit code {process.returncode}: {_tail(roles.logs[name])})"
            for name, process in roles.processes.items()
            if process.returncode is not None
        ]

    async def restart(self, lane: Lane) -> Lane:
        await self._stop_lane(lane.number)
        return await self._start_lane(lane.number)

    async def _stop_lane(self, number: int) -> None:
        roles = self._roles.pop(number, None)
        if roles is None:
            return
        for process in roles.processes.values():
            if process.returncode is None:
                process.terminate()
        for process in roles.processes.values():
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if roles.network is not None:
            await asyncio.to_thread(roles.network.destroy)

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop_lane(number) for number in list(self._roles)))


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"
