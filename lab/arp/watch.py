"""Noticing ARP poisoning from the victim's side, as arpwatch ("flip flop") and ettercap's arp_cop do:
an address that moves to another MAC, and two addresses that come to share one. Sans-IO: it is fed
snapshots of the ARP cache and says what changed; reading the cache and recording are the caller's.

A detection is evidence, not a defence: the poisoned entry is used all the same."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DetectionKind = Literal["moved", "shared"]


@dataclass(frozen=True)
class Detection:
    kind: DetectionKind
    ip: str
    mac: str
    """Where `ip` is now."""
    before: str
    """moved: the MAC `ip` had before; shared: the other address now on the same MAC."""
    at: float


class ArpWatch:
    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._sharing: set[frozenset[str]] = set()

    def observe(self, table: Mapping[str, str], at: float) -> list[Detection]:
        """`table`: IP address -> MAC, the cache as it is at `at` (monotonic seconds)."""
        found = []
        for ip, mac in sorted(table.items()):
            known = self._known.get(ip)
            if known is not None and known != mac:
                found.append(Detection("moved", ip, mac, known, at))
            self._known[ip] = mac
        by_mac: dict[str, list[str]] = {}
        for ip, mac in table.items():
            by_mac.setdefault(mac, []).append(ip)
        sharing = {frozenset(ips) for ips in by_mac.values() if len(ips) > 1}
        for pair in sorted(sharing - self._sharing, key=sorted):
            first, *others = sorted(pair)
            found.append(Detection("shared", first, table[first], ", ".join(others), at))
        self._sharing = sharing
        return found
