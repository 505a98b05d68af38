"""Key pinning with a known_hosts-style file: trust on first use, as SSH does (seed 002 §三).

One line per host: `<name> SHA256:<hex of the SHA-256 of the SubjectPublicKeyInfo>`. On first contact
the key is recorded; afterwards a different key for the same name is refused. As with SSH, a pin made
while an attacker is already in the middle pins the attacker's key. The file is its owner's only (0600),
and a line that is not a pin (nor blank, nor a `#` comment) is refused, never skipped: a pin that cannot
be read would be recorded again, from whoever answers next.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Final

from lab.channel.errors import PinnedKeyChanged

FINGERPRINT: Final = re.compile(r"SHA256:[0-9a-fA-F]+")


class KnownHostsUnreadable(ValueError):
    """The known_hosts file holds something other than pins."""


def parse_pins(data: bytes) -> dict[str, str]:
    """Host name (lower case) -> fingerprint; `KnownHostsUnreadable` for anything but pins."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise KnownHostsUnreadable("not UTF-8 text") from None
    pins = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2 or not FINGERPRINT.fullmatch(fields[1]):
            raise KnownHostsUnreadable(f"line {number} is not `NAME SHA256:HEX`")
        pins[fields[0].lower()] = fields[1]
    return pins


class KnownHosts:
    def __init__(self, path: Path) -> None:
        self.path = path

    def pins(self) -> dict[str, str]:
        try:
            return parse_pins(self.path.read_bytes())
        except FileNotFoundError:
            return {}

    def check(self, name: str, fingerprint: str) -> str:
        """'matched' or 'recorded' (first use); raises `PinnedKeyChanged` for a different key."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as lock:
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
