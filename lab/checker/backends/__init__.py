"""How roles are started and addressed. The runner drives every backend through the same control
interface (`lab.control`); a backend only decides where the processes run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class WebService:
    """bank.lab over real TLS as the client reaches it: a host, its HTTPS and its plain-HTTP port."""

    host: str
    https: int
    http: int


@dataclass(frozen=True)
class Lane:
    """One server, attacker and client: one scenario at a time. The runner reaches them only through
    their control ports, so a lane is the same thing whether its roles are processes or containers."""

    number: int
    controls: Mapping[str, Address]
    """Each role's control port, by role name."""
    secret: str
    """The lab's control secret, which every request carries."""
    server_service: Address
    """The server as the client dials it directly (for the clean session that makes a key pin)."""
    attacker_service: Address
    """The attacker as the client dials it, under the server's name."""
    attacker_web: WebService | None = None
    """The attacker in front of the HTTPS bank, as real clients reach bank.lab (the real-TLS stack);
    None where the lane's roles do not serve it."""
    server_web: WebService | None = None
    """The HTTPS bank itself, which a real client dials through ARP positioning (at the server's
    address on the lab network)."""
    network: Mapping[str, str] | None = None
    """Each role's address on a lab network of hosts with their own ARP caches, where the attacker can
    get on the path by ARP poisoning; None where the roles share one host (loopback)."""
    transparent: int | None = None
    """The attacker's transparent listener on that network, where the server's ports are redirected."""

    @property
    def attacker_ports(self) -> frozenset[int]:
        """Where the client reaches the attacker by names: the lab channel's port, the HTTPS bank's."""
        web = (self.attacker_web.https, self.attacker_web.http) if self.attacker_web else ()
        return frozenset((self.attacker_service.port, *web))

    @property
    def ports(self) -> frozenset[int]:
        """Every port the lane's connections go to: the attacker's and the server's (a run's capture
        keeps these)."""
        web = (self.server_web.https, self.server_web.http) if self.server_web else ()
        return self.attacker_ports | {self.server_service.port, *web}


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
