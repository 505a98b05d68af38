"""The stacks a scenario can run on: the protocol the client, the attacker and the server speak.

Today there is one, the lab channel (docs/protocol.md), whose every protection is a switch. A scenario
names its stack and an attack the stacks it applies to; a scenario of an attack on a stack it does not
apply to cannot be made (`Scenario` refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Stack:
    id: str
    summary: str


LAB_CHANNEL: Final = "lab-channel"

STACKS: Final = {
    stack.id: stack
    for stack in (
        Stack(LAB_CHANNEL, "the lab's own TLS-like channel, every protection a switch (docs/protocol.md)"),
    )
}
