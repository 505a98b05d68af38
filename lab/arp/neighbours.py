"""A host's ARP cache as its kernel holds it (`/proc/net/arp`): readable without any privilege, so the
client can watch its own cache for poisoning while it works."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

ARP_TABLE: Final = Path("/proc/net/arp")
COMPLETE: Final = 0x2
"""ATF_COM: the entry holds a hardware address (an incomplete one is a question still unanswered)."""
PERMANENT: Final = 0x4
"""ATF_PERM: a static entry, which no ARP reply can move."""


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    permanent: bool
    device: str


def parse_arp_table(text: str) -> dict[str, Neighbour]:
    """The complete entries of a `/proc/net/arp` listing, by IP address."""
    entries = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6:
            continue
        ip, _, flags, mac, _, device = fields[:6]
        try:
            bits = int(flags, 16)
        except ValueError:
            continue
        if bits & COMPLETE:
            entries[ip] = Neighbour(ip, mac.lower(), bool(bits & PERMANENT), device)
    return entries


def read_neighbours(table: Path = ARP_TABLE) -> dict[str, Neighbour]:
    return parse_arp_table(table.read_text())
