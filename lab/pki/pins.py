"""Key pinning with a known_hosts-style file: trust on first use, as SSH does (seed 002 §三).

One line per host: `<name> SHA256:<hex of the SHA-256 of the SubjectPublicKeyInfo>`. On first contact
the key is recorded; afterwards a different key for the same name is refused. As with SSH, a pin made
while an attacker is already in the middle pins the attacker's key.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from lab.channel.errors import PinnedKeyChanged


class KnownHosts:
    def __init__(self, path: Path) -> None:
        self.path = path

    def pins(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        pins = {}
        for line in self.path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and not line.startswith("#"):
                pins[fields[0].lower()] = fields[1]
        return pins

    def check(self, name: str, fingerprint: str) -> str:
        """'matched' or 'recorded' (first use); raises `PinnedKeyChanged` for a different key."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two clients pinning at once must not both record
            pinned = self.pins().get(name.lower())
            if pinned is None:
                lock.write(f"{name.lower()} {fingerprint}\n")
                return "recorded"
        if pinned != fingerprint:
            raise PinnedKeyChanged(
                f"the key of {name} changed: pinned {pinned[:23]}..., presented {fingerprint[:23]}... "
                f"(remove its line from {self.path} if the server really changed its key)",
                step="server_certificate",
            )
        return "matched"
