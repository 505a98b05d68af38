"""The compose backend: the roles are the services of docker-compose.yml, reached by service name on
the lab's internal network. This runs in the checker's container; `lab.containers` is the host's side.

Each role's container runs every lane (`mitmlab role NAME --lanes N`): lane i is on the control and
service base ports + i - 1. Docker starts a container that died again (`restart: unless-stopped`) and
the container starts a lane whose role died again, so `restart` only waits for the lane to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Mapping
from typing import Final

from lab.checker.backends import BackendError, Lane
from lab.control import ControlError, NoAnswer, request
from lab.net import Address
from lab.state import ROLES

CONTROL_PORT: Final = 7000
SERVICE_PORTS: Final = {"service": 4433, "https": 9443, "http": 9080}
"""The server's services as docker-compose.yml starts them (the lab channel's, the HTTPS bank's two),
and the attacker's in front of them, on the same ports (lane i: + i - 1)."""
TRANSPARENT_PORT: Final = 8443
"""mitmproxy's transparent listener in the attacker's container, where ARP positioning redirects."""
STARTUP_TIMEOUT: Final = 90.0
PROBE_TIMEOUT: Final = 2.0


class ComposeBackend:
    name = "compose"

    def __init__(
        self,
        secret: str,
        hosts: Mapping[str, str] | None = None,
        control_port: int = CONTROL_PORT,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.secret = secret
        self.hosts = dict(hosts or {role: role for role in ROLES})
        """Each role's host name: its compose service name."""
        self.control_port = control_port
        self.startup_timeout = startup_timeout
        self._network: dict[str, str] | None = None
        """Each role's address on the lab network, once looked up: ARP positioning dials the server's
        own address, and poisons the client's and the server's caches."""

    def lane(self, number: int) -> Lane:
        shift = number - 1
        return Lane(
            number=number,
            controls={role: Address(host, self.control_port + shift) for role, host in self.hosts.items()},
            secret=self.secret,
            services={
                role: {name: Address(self.hosts[role], port + shift) for name, port in SERVICE_PORTS.items()}
                for role in ("server", "attacker")
            },
            network=self._network,
            transparent=TRANSPARENT_PORT + shift if self._network else None,
        )

    async def start(self, lanes: int) -> list[Lane]:
        self._network = await self._addresses()
        chosen = [self.lane(number) for number in range(1, lanes + 1)]
        await asyncio.gather(*(self._until_answering(lane) for lane in chosen))
        return chosen

    async def _addresses(self) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                found = {
                    role: (await loop.getaddrinfo(host, None, family=socket.AF_INET))[0][4][0]
                    for role, host in self.hosts.items()
                }
            except OSError as exc:  # a container not up yet has no name on the network
                if time.monotonic() > deadline:
                    raise BackendError(f"the roles' addresses cannot be found: {exc}") from None
                await asyncio.sleep(0.25)
                continue
            return {role: str(address) for role, address in found.items()}

    async def restart(self, lane: Lane) -> Lane:
        """Fresh roles for the lane: those still running are told to shut down (their container starts
        them again, from a fresh copy of the state), so nothing left over from a run that failed (a
        session still under way, a pending replay) can write into the next one's evidence."""
        for address in lane.controls.values():
            with contextlib.suppress(ControlError, OSError, TimeoutError):
                await request(
                    address.host, address.port, "shutdown", secret=lane.secret, timeout=PROBE_TIMEOUT
                )
        gone: set[str] = set()  # each role seen down once (one may be back before another has gone)
        deadline = time.monotonic() + self.startup_timeout
        while gone != set(lane.controls) and time.monotonic() < deadline:
            gone |= {role for role in lane.controls if await self._probe(lane, role) is not None}
            await asyncio.sleep(0.05)
        await self._until_answering(lane)
        return lane

    async def _until_answering(self, lane: Lane) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while failures := await self._probe_all(lane):
            refusals = [why for why, answered in failures if answered]
            if refusals:  # a role that answers with an error will not get better by waiting
                raise BackendError(f"lane {lane.number} refuses the checker: {'; '.join(refusals)}")
            if time.monotonic() > deadline:
                raise BackendError(
                    f"lane {lane.number} does not answer after {self.startup_timeout:g} s: "
                    f"{'; '.join(why for why, _ in failures)} (do the role containers run as many lanes "
                    "as --jobs? both come from MITMLAB_JOBS)"
                )
            await asyncio.sleep(0.25)

    async def dead_roles(self, lane: Lane, settle: float = 0.0) -> list[str]:
        deadline = time.monotonic() + settle
        while True:
            failures = await self._probe_all(lane)
            if failures or time.monotonic() >= deadline:
                return [why for why, _ in failures]
            await asyncio.sleep(0.1)

    async def _probe_all(self, lane: Lane) -> list[tuple[str, bool]]:
        probes = await asyncio.gather(*(self._probe(lane, role) for role in ROLES))
        return [probe for probe in probes if probe is not None]

    async def _probe(self, lane: Lane, role: str) -> tuple[str, bool] | None:
        """Why `role` of `lane` is not there, and whether it answered at all; None when it is."""
        address = lane.controls[role]
        try:
            await request(address.host, address.port, "status", secret=lane.secret, timeout=PROBE_TIMEOUT)
        except NoAnswer as exc:  # caught going down, or coming up
            return f"{role} (at {address}: {exc})", False
        except ControlError as exc:
            return f"{role} (at {address}: {exc})", True
        except (OSError, TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or "timed out"
            return f"{role} (not answering at {address}: {why})", False
        return None

    async def stop(self) -> None:
        """Nothing to stop: the containers are compose's, and stay up for `docker compose run`."""
