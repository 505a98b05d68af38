"""How roles are started and addressed. The runner drives every backend through the same control
interface (`lab.control`); a backend only decides where the processes run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from lab.net import Address


@dataclass(frozen=True)
class Lane:
    """One server, attacker and client: one scenario at a time. The runner reaches them only through
    their control ports, so a lane is the same thing whether its roles are processes or containers."""

    number: int
    controls: Mapping[str, Address]
    """Each role's control port, by role name."""
    secret: str
    """The lab's control secret, which every request carries."""
    services: Mapping[str, Mapping[str, Address]]
    """Each role's services by name, as its ready file names them, where the client reaches them: the
    server's as the client dials it directly, the attacker's under the server's name (`lab.stacks`'s
    `play` asks for them by name)."""
    network: Mapping[str, str] | None = None
    """Each role's address on a lab network of hosts with their own ARP caches, where the attacker can
    get on the path by ARP poisoning; None where the roles share one host (loopback)."""
    transparent: int | None = None
    """The attacker's transparent listener on that network, where the server's ports are redirected."""

    @property
    def attacker_ports(self) -> frozenset[int]:
        """Where the client reaches the attacker by names: every service of the attacker's."""
        return frozenset(address.port for address in self.services.get("attacker", {}).values())

    @property
    def ports(self) -> frozenset[int]:
        """Every port the lane's connections go to: the attacker's and the server's (a run's capture
        keeps these)."""
        server = self.services.get("server", {}).values()
        return self.attacker_ports | {address.port for address in server}


class Backend(Protocol):
    name: str

    async def start(self, lanes: int) -> list[Lane]:
        """Start `lanes` sets of roles; raises `BackendError` when they cannot start."""

    async def restart(self, lane: Lane) -> Lane:
        """Fresh roles for a lane whose roles died, stopped answering or ran a scenario that failed;
        raises `BackendError` when the lane does not come back (the runner goes on without it)."""

    async def dead_roles(self, lane: Lane, settle: float = 0.0) -> list[str]:
        """The roles of `lane` that are no longer running, with how they ended; `settle` seconds are
        allowed for an exit that is under way to show."""

    async def stop(self) -> None: ...


class BackendError(Exception):
    """The roles could not be started."""
