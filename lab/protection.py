"""What a protection is, on every stack: one type for the lab channel's switches and for the settings a
real client or host has of its own (docs/protections.md)."""

from __future__ import annotations

import dataclasses
from typing import Final


@dataclasses.dataclass(frozen=True)
class Protection:
    """One protection of the brief: the one definition the CLI switches, report columns and docs use."""

    id: str
    short: str
    """A header narrow enough for an 80-column terminal table."""
    whose: str
    """Whose setting it is (docs/protocol.md: "Which protections are shared settings")."""
    when_on: str
    """What it does, in one line."""
    doc: str
    """What it does when on, and what turning it off allows, with its seed."""
    seed: str
    """Where in the seed articles it comes from; empty where they do not tell of it."""

    @property
    def flag(self) -> str:
        return self.id.replace("_", "-")


CLIENT_CHECK: Final = "a client check"
EACH_SIDE: Final = "each side's own"
BOTH_AGREE: Final = "both sides must agree"
CLIENT_SETTING: Final = "the client's own setting"
"""A real client's or host's: how the client is configured (curl's --crlfile, a static ARP entry), not
a switch of the lab channel's."""
