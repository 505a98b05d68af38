"""The lab's network without Docker (root only): a bridge in a namespace of its own and three hosts on
veth pairs, client, server and attacker, as a Docker bridge network would have them (FIELD-NOTES). The
host joins the bridge too, on the first address, to reach the roles' control ports; nothing is routed
out of it. Names carry a prefix, so that two labs, or a crashed one, do not collide."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from lab.arp.poison import PositioningError

HOSTS: Final = ("client", "server", "attacker")
LOCK_DIRECTORY: Final = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
_LOCKS: dict[str, TextIO] = {}
"""The networks this process holds, by prefix: an open file each, with an exclusive lock on it."""
INTERFACE: Final = "eth0"
"""Every host's interface on the lab network, as in a container."""


@dataclass(frozen=True)
class LabNetwork:
    prefix: str = "mitmlab"
    subnet: str = "10.203.0"
    """A /24 of the RFC 1918 space: the host is .1, the hosts .2, .3 and .4 in the order of HOSTS."""

    @classmethod
    def for_lane(cls, number: int) -> LabNetwork:
        """The network of the check's lane `number` (one check at a time per host: a lane's network
        left over by a crash is taken down when it is made again)."""
        return cls(prefix=f"mitmlab-{number}", subnet=f"10.203.{number}")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def host_interface(self) -> str:
        return f"{self.prefix}-host"[:15]  # an interface name has at most 15 characters

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS.index(host) + 2}"

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.1"

    def exec(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def exists(self) -> bool:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
        return any(line.split()[0] == self.bridge for line in listed.stdout.splitlines() if line.strip())

    def create(self) -> None:
        """The namespaces, the bridge and the veths; a network left over by a crash is taken down first,
        one that another process holds is not (its lock says so)."""
        if os.geteuid() != 0:
            raise PositioningError(
                "ARP positioning without Docker makes network namespaces, which needs root: run it with "
                "sudo, or use --backend compose"
            )
        self._hold()
        if self.exists():
            self._take_down()
        bridge = self.bridge
        steps = [
            ["ip", "netns", "add", bridge],
            ["ip", "-n", bridge, "link", "add", "br0", "type", "bridge"],
            ["ip", "-n", bridge, "link", "set", "br0", "up"],
            [
                "ip",
                "link",
                "add",
                self.host_interface,
                "type",
                "veth",
                "peer",
                "name",
                "host",
                "netns",
                bridge,
            ],
            ["ip", "-n", bridge, "link", "set", "host", "master", "br0", "up"],
            ["ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_interface],
            ["ip", "link", "set", self.host_interface, "up"],
        ]
        for host in HOSTS:
            ns = self.namespace(host)
            steps += [
                ["ip", "netns", "add", ns],
                [
                    "ip",
                    "link",
                    "add",
                    INTERFACE,
                    "netns",
                    ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    host,
                    "netns",
                    bridge,
                ],
                ["ip", "-n", bridge, "link", "set", host, "master", "br0", "up"],
                ["ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", INTERFACE],
                ["ip", "-n", ns, "link", "set", INTERFACE, "up"],
                ["ip", "-n", ns, "link", "set", "lo", "up"],
            ]
        try:
            for step in steps:
                _ip(step)
        except PositioningError:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Everything `create` made, and the claim on it."""
        self._take_down()
        lock = _LOCKS.pop(self.prefix, None)
        if lock is not None:
            lock.close()  # closing the file lets the lock go

    def _take_down(self) -> None:
        """Deleting a namespace deletes its ends of the veths."""
        subprocess.run(["ip", "link", "del", self.host_interface], capture_output=True, check=False)
        for ns in (*(self.namespace(h) for h in HOSTS), self.bridge):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def _hold(self) -> None:
        """This process's claim on the network's names, for as long as it has the network."""
        if self.prefix in _LOCKS:
            return
        lock = (LOCK_DIRECTORY / f"{self.prefix}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise PositioningError(
                f"the lab network {self.prefix} is in use by another check on this host: one ARP check "
                "at a time (or wait for the other to finish)"
            ) from None
        _LOCKS[self.prefix] = lock


def _ip(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise PositioningError(f"{' '.join(argv)}: {done.stderr.strip()}")
