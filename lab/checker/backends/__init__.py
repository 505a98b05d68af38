"""How roles are started and addressed. The runner drives every backend through the same control
interface (`lab.control`); a backend only decides where the processes run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lab.state import StateDir


@dataclass(frozen=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True)
class Lane:
    """One server, attacker and client, with the state directory they share: one scenario at a time."""

    number: int
    state: StateDir
    """Where the runner reads the lane's evidence."""
    server_control: Address
    attacker_control: Address
    client_control: Address
    server_service: Address
    """The server as the client dials it directly (for the clean session that makes a key pin)."""
    attacker_service: Address
    """The attacker as the client dials it, under the server's name."""


class Backend(Protocol):
    name: str

    async def start(self, lanes: int) -> list[Lane]:
        """Start `lanes` sets of roles; raises `BackendError` when they cannot start."""

    async def restart(self, lane: Lane) -> Lane:
        """Replace a lane whose roles died or stopped answering."""

    async def dead_roles(self, lane: Lane, settle: float = 0.0) -> list[str]:
        """The roles of `lane` that are no longer running, with how they ended; `settle` seconds are
        allowed for an exit that is under way to show."""

    async def stop(self) -> None: ...


class BackendError(Exception):
    """The roles could not be started."""
