"""The stacks a scenario can run on: each one module of this package, found by its `STACK`.

A stack is the protocol the client, the attacker and the server speak, and everything that depends on
it: the protections that can stop an attack on it, the attacks that apply to it, how a run is played on
a lane of roles (`play`, through the runner's `Lane` API) and how the run's evidence becomes a verdict
(`decide`). The runner, the report and the CLI take every stack from `STACKS` and name none, as they
take every view from `lab.checker.views`. Adding a stack is adding a module here, the addons of its
attacks, its view and its docs (docs/checker.md, "Adding a stack").

A scenario names its stack, and a scenario of an attack on a stack it does not apply to cannot be made
(`lab.stacks.scenario.Scenario` refuses it).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from lab.attacks import ATTACK_IDS
from lab.protection import CLIENT_SETTING, Protection

if TYPE_CHECKING:
    from lab.net import Address
    from lab.stacks.scenario import Scenario
    from lab.verdict import GroundTruth, RunEvidence, Verdict


class CannotPlay(Exception):
    """This lane cannot play the run here (a part of a role that could not start, a positioning the
    stack does not have): the run is an `error` with this reason, and the others go on."""


class NotRunHere(CannotPlay):
    """This machine does not allow the run (a program that needs root, as sshd): nothing ran, and the
    run is `not-run-here`, counted apart, with this reason."""


class LaneRun(Protocol):
    """What the runner offers a stack's `play`: one lane of roles, for one run, its steps timed out and
    its failures made the run's `error` by the runner."""

    def service(self, role: str, name: str) -> Address:
        """Where the client reaches `role`'s service `name` (as the role's ready file named it);
        raises `ControlError` where the lane's roles do not serve it."""
        ...

    async def call(self, role: str, cmd: str, *, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """A control request to one of the lane's roles (`lab.control`)."""
        ...

    async def fresh(self, configure: Mapping[str, Any], *, attack: bool) -> None:
        """Every role reset, the server configured with `configure`, the attacker capturing the lane's
        connections and, if `attack`, running the scenario's attack."""
        ...

    async def through_arp(
        self,
        ports: list[int],
        play: Callable[[Address], Awaitable[dict[str, Any]]],
        *,
        to: int | None = None,
    ) -> dict[str, Any]:
        """`play` with the client dialling the server's own address (at the first of `ports`, all of
        which the attacker redirects to its port `to`, by default mitmproxy's transparent listener),
        around the ARP steps of docs/arp.md; an outcome `not_positioned` when the attacker could not
        get on the path."""
        ...

    async def set_aside(self) -> None:
        """The roles' evidence so far taken and kept apart (under pre/): a session before the attack."""
        ...

    def went_direct(self, began: float, ended: float) -> None:
        """The client went straight to the server between these times (the capture's clock)."""
        ...


class Client(Protocol):
    """A client a stack's scenarios can name: a real program in one configuration of its own."""

    @property
    def summary(self) -> str: ...

    @property
    def programs(self) -> tuple[str, ...]:
        """What must be installed for it to run (`lab.system`)."""
        ...


class Stack(Protocol):
    id: ClassVar[str]
    order: ClassVar[int]
    """Where the stack comes in the report and the CLI."""
    summary: ClassVar[str]
    protections: ClassVar[Mapping[str, Protection]]
    """The protections that can stop an attack on it, by id; a protection two stacks share is the one
    object in both."""
    attacks: ClassVar[tuple[str, ...]]
    """The attacks (`lab.attacks`) that apply to it."""
    clients: ClassVar[Mapping[str, Client]]
    """The clients its scenarios name (`Scenario.victim`), by id: real programs, each with its own
    settings; empty where the lab's own client plays, with the scenario's protections."""

    async def play(self, lane: LaneRun, scenario: Scenario) -> dict[str, Any]:
        """The run's steps on the lane; the client's outcome (`outcome`, and `keylogs` by role)."""
        ...

    def decide(self, run: RunEvidence, truth: GroundTruth) -> Verdict:
        """The run's verdict, from what the roles recorded and nothing else."""
        ...


NAMES: Final = "names"
ARP: Final = "arp"
POSITIONINGS: Final = {
    NAMES: "the client dials the attacker under the server's name (the lab's DNS, or its --resolve)",
    ARP: "the client dials the server's own address; the attacker poisons both ARP caches and redirects "
    "the server's ports to mitmproxy's transparent mode (docs/arp.md)",
}
"""How the attacker got on the path, on every stack: each run says which."""

LINK_LAYER: Final = {
    p.id: p
    for p in (
        Protection(
            "static_arp",
            "sarp",
            CLIENT_SETTING,
            "a permanent ARP entry for the server",
            "the client holds a permanent ARP entry for the server, which no ARP reply moves (as hardened "
            "hosts and a switch's dynamic ARP inspection give)",
            "004 TCP三次握手建立连接",
        ),
    )
}
"""The protections against ARP positioning: the client's own settings, as on a hardened host."""


def _discover() -> dict[str, Stack]:
    found: list[Stack] = []
    for module in pkgutil.iter_modules(__path__):
        stack = getattr(importlib.import_module(f"{__name__}.{module.name}"), "STACK", None)
        if stack is not None:
            found.append(stack)
    return {stack.id: stack for stack in sorted(found, key=lambda s: s.order)}


def _one_each(groups: Iterable[Mapping[str, Protection]]) -> dict[str, Protection]:
    merged: dict[str, Protection] = {}
    for group in groups:
        for pid, protection in group.items():
            if merged.setdefault(pid, protection) is not protection:
                raise ValueError(f"the protection {pid!r} is defined twice")
    return merged


def attacks_on(stack: str, chosen: Iterable[str] | None = None) -> tuple[str, ...]:
    """The attacks that apply to `stack`, in catalog order; of `chosen` only, if given."""
    among = set(ATTACK_IDS if chosen is None else chosen) & set(STACKS[stack].attacks)
    return tuple(a for a in ATTACK_IDS if a in among)


def stacks_of(attack: str) -> tuple[str, ...]:
    """The stacks `attack` applies to, in order."""
    return tuple(stack.id for stack in STACKS.values() if attack in stack.attacks)


STACKS: Final[Mapping[str, Stack]] = _discover()  # the stacks import what is above
PROTECTIONS_BY_ID: Final = _one_each([*(s.protections for s in STACKS.values()), LINK_LAYER])
"""Every protection of every stack and of the link layer, by id, each defined once."""
EVERY_PROTECTION: Final = tuple(PROTECTIONS_BY_ID)
"""Every protection id of every stack, and of the link layer: what evidence may name."""
if not {a for stack in STACKS.values() for a in stack.attacks} <= set(ATTACK_IDS):
    raise ValueError("a stack names an attack that is not in the catalog")
