"""A run's sequence diagram, drawn from its capture (lab.capture.streams), not from the roles' own
accounts, so that the two can be compared: the client, the attacker and the server as lifelines; each
TCP connection's handshake, its lab-channel frames, TLS records or SSH packets, its close; through
ARP, the ARP frames. The attacker's lifeline has two sides, one for its connections with the client
and one for those with the server, so that its two connections show as two.

A lab-channel frame the attacker sent that its peer on the other side did not send it (or not that
many times) is the attacker's change, and is drawn in red: a flipped record, a replayed one, a
ServerHello with another certificate, a ClientHello with fewer suites. So is an ARP reply that puts
another host's address at the attacker's MAC, and an SSH key exchange reply to the client with a host
key the server did not send (host-key-swap). TLS records and SSH's encrypted packets are not
compared: an intercepting attacker encrypts each leg under keys of its own, so every record differs.

The SVG is built with ElementTree, so that nothing a capture holds can break out of its text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from lab.capture.streams import Capture, Conversation, Message, ssh_host_key

MAX_ROWS: Final = 300
"""A diagram draws at most this many arrows (a lab run has a few dozen) and says how many it left out."""
ROW: Final = 20
TOP: Final = 58
WIDTH: Final = 860
X: Final = {"client": 120, "attacker:client": 400, "attacker:server": 460, "server": 740}
"""Where each lifeline is: the attacker's two sides face the client and the server."""
BROADCAST: Final = "ff:ff:ff:ff:ff:ff"
SVG_NAMESPACE: Final = "http://www.w3.org/2000/svg"
STYLE: Final = """
.sequence text { font: 11px ui-monospace, monospace; fill: #222; }
.sequence .role { font: bold 13px sans-serif; text-anchor: middle; }
.sequence .life { stroke: #bbb; stroke-dasharray: 4 3; }
.sequence .box { fill: #f3f3f3; stroke: #bbb; }
.sequence .t { fill: #888; text-anchor: end; }
.sequence .l { text-anchor: middle; }
.sequence path { fill: none; stroke-width: 1.4; }
.sequence .c0 { stroke: #2b6cb0; } .sequence .c1 { stroke: #2f855a; }
.sequence .c2 { stroke: #6b46c1; } .sequence .c3 { stroke: #b7791f; }
.sequence .tcp { stroke: #999; } .sequence .arp { stroke: #666; stroke-dasharray: 2 2; }
.sequence path.changed { stroke: #c53030; stroke-width: 2.6; }
.sequence text.changed { fill: #c53030; font-weight: bold; }
"""
CHANGED: Final = "the attacker's: its peer on the other side did not send it this (or not this many times)"
FORGED_ARP: Final = "the attacker's: another host's address at the attacker's MAC"
SWAPPED_HOST_KEY: Final = (
    "the attacker's: a host key the server did not send it (it signs the key exchange itself)"
)


@dataclass(frozen=True)
class Places:
    """Where the roles are, to tell whose each connection is."""

    attacker_ports: frozenset[int]
    """The ports the attacker listens on: a connection to one of them is the client's, to the attacker."""
    direct: tuple[tuple[float, float], ...] = ()
    """When the client talked to the server straight (the session that makes a key pin), wall clock."""
    hosts: Mapping[str, str] | None = None
    """Each role's address on a lab network; None on loopback."""


@dataclass(frozen=True)
class _Leg:
    conversation: Conversation
    opener: str
    answerer: str
    kind: str
    """Its colour class: c0, c1..."""

    def end(self, from_client: bool) -> tuple[str, str]:
        """The lifelines a segment or message goes from and to."""
        opener, answerer = _side(self.opener, self.answerer), _side(self.answerer, self.opener)
        return (opener, answerer) if from_client else (answerer, opener)

    def sender(self, message: Message) -> str:
        return self.opener if message.from_client else self.answerer


@dataclass(frozen=True)
class _Arrow:
    time: float
    source: str
    target: str
    label: str
    kind: str
    """The connection's colour class, "tcp", "arp"; "changed" for the attacker's changes."""
    title: str = ""


def sequence_diagram(capture: Capture, places: Places) -> str:
    """The diagram as a standalone SVG document (it carries its own style)."""
    hosts = places.hosts or {}
    macs = _macs(capture, hosts)
    legs = [
        _Leg(c, *_roles(c, places, macs.get("attacker")), f"c{n % 4}")
        for n, c in enumerate(capture.conversations)
    ]
    changed = _attackers_changes(legs)
    arrows = [arrow for n, leg in enumerate(legs) for arrow in _leg_arrows(n, leg, changed)]
    arrows += _arp_arrows(capture, macs, hosts)
    arrows.sort(key=lambda arrow: arrow.time)
    shown = arrows[:MAX_ROWS]
    notes = [_describe(n, leg) for n, leg in enumerate(legs)]
    if len(arrows) > len(shown):
        notes.insert(0, f"... and {len(arrows) - len(shown)} more, not drawn")
    if not arrows:
        notes.insert(0, "The capture holds no connection.")
    bottom = TOP + ROW * len(shown)
    height = bottom + 16 * len(notes) + 12
    size = {"width": str(WIDTH), "height": str(height), "viewBox": f"0 0 {WIDTH} {height}"}
    svg = ET.Element("svg", {"xmlns": SVG_NAMESPACE, "class": "sequence", "role": "img", **size})
    ET.SubElement(svg, "title").text = "The run's sequence diagram, drawn from its capture"
    ET.SubElement(svg, "style").text = STYLE
    left = X["attacker:client"] - 30
    ET.SubElement(svg, "rect", {"class": "box", "x": str(left), "y": "8", "width": "120", "height": "26"})
    middle = (X["attacker:client"] + X["attacker:server"]) // 2
    for name, x in (("client", X["client"]), ("attacker", middle), ("server", X["server"])):
        ET.SubElement(svg, "text", {"class": "role", "x": str(x), "y": "26"}).text = name
    for x in X.values():
        line = {"class": "life", "x1": str(x), "x2": str(x), "y1": "36", "y2": str(bottom)}
        ET.SubElement(svg, "line", line)
    start = shown[0].time if shown else 0.0
    for row, arrow in enumerate(shown):
        _draw(svg, arrow, TOP + ROW * row, start)
    for row, note in enumerate(notes):
        ET.SubElement(svg, "text", {"x": "8", "y": str(bottom + 16 * (row + 1))}).text = note
    return ET.tostring(svg, encoding="unicode")


def _draw(svg: ET.Element, arrow: _Arrow, y: int, start: float) -> None:
    x1, x2 = X[arrow.source], X[arrow.target]
    if x1 == x2:  # to itself (a capture can say anything): a short turn out and back
        x2 = x1 + 24
    heading = 1 if x2 > x1 else -1
    group = ET.SubElement(svg, "g")
    if arrow.title:
        ET.SubElement(group, "title").text = arrow.title
    ET.SubElement(
        group, "text", {"class": "t", "x": "62", "y": str(y + 4)}
    ).text = f"{(arrow.time - start) * 1000:.1f} ms"
    head = f"M{x2 - 7 * heading} {y - 4} L{x2} {y} L{x2 - 7 * heading} {y + 4}"
    ET.SubElement(group, "path", {"class": arrow.kind, "d": f"M{x1} {y} H{x2} {head}"})
    label = {
        "class": "l changed" if arrow.kind == "changed" else "l",
        "x": str((x1 + x2) // 2),
        "y": str(y - 4),
    }
    ET.SubElement(group, "text", label).text = arrow.label


def _describe(number: int, leg: _Leg) -> str:
    (opener_ip, opener_port), (answer_ip, answer_port) = leg.conversation.client, leg.conversation.server
    what = {"lab": "the lab channel", "tls": "TLS", "ssh": "SSH", "http": "plain HTTP"}.get(
        leg.conversation.protocol, "TCP"
    )
    if leg.conversation.agreed:
        what += f", {leg.conversation.agreed}"
    line = (
        f"connection {number + 1}: {leg.opener} {opener_ip}:{opener_port} to {leg.answerer} "
        f"{answer_ip}:{answer_port}, {what}"
    )
    unreadable = "; ".join(leg.conversation.unreadable.values())
    return f"{line} ({unreadable})" if unreadable else line


def _macs(capture: Capture, hosts: Mapping[str, str]) -> dict[str, str]:
    """Each role's MAC on a lab network. The attacker's is on the frames from its address; another
    host's, on a frame from its address that did not come from the attacker's MAC (the attacker
    answers from the server's address when it intercepts, and forwards frames under its own MAC)."""
    by_ip = {ip: role for role, ip in hosts.items()}
    sent = [
        (ip, segment.macs[0])
        for conversation in capture.conversations
        for segment in conversation.segments
        for ip in [(conversation.client if segment.from_client else conversation.server)[0]]
    ]
    sent += [(frame.sender_ip, frame.macs[0]) for frame in capture.arp if frame.sender_mac == frame.macs[0]]
    attacker = next((mac for ip, mac in sent if ip == hosts.get("attacker")), None)
    macs = {"attacker": attacker} if attacker else {}
    for ip, mac in sent:
        if ip in by_ip and mac != attacker:
            macs.setdefault(by_ip[ip], mac)
    return macs


def _roles(conversation: Conversation, places: Places, attacker_mac: str | None) -> tuple[str, str]:
    """Who opened the connection, and who answered it."""
    (opener_ip, _), (answer_ip, answer_port) = conversation.client, conversation.server
    if places.hosts is None:
        if answer_port in places.attacker_ports:
            return "client", "attacker"
        direct = any(begin <= conversation.opened <= end for begin, end in places.direct)
        return ("client" if direct else "attacker"), "server"
    by_ip = {ip: role for role, ip in places.hosts.items()}
    opener, answerer = by_ip.get(opener_ip, "client"), by_ip.get(answer_ip, "server")
    if opener == "client" and answerer == "server":
        sent_to = next((s.macs[1] for s in conversation.segments if s.from_client), None)
        if sent_to is not None and sent_to == attacker_mac:
            answerer = "attacker"  # sent to the attacker's MAC: the poisoning took, and it answered
    return opener, answerer


def _side(role: str, peer: str) -> str:
    """A role's lifeline, facing its peer: the attacker has one side for each of the others."""
    if role != "attacker":
        return role
    return "attacker:server" if peer == "server" else "attacker:client"


def _attackers_changes(legs: list[_Leg]) -> dict[tuple[int, int], str]:
    """(leg, message) for each change of the attacker's, with what it is: the lab channel's (below)
    and SSH's (`_swapped_host_keys`)."""
    return {**dict.fromkeys(_changed_frames(legs), CHANGED), **_swapped_host_keys(legs)}


def _changed_frames(legs: list[_Leg]) -> set[tuple[int, int]]:
    """(leg, message) for each lab-channel frame the attacker sent that its peer on the other side
    did not send it, or not that many times, in the order they went. None where a leg the attacker
    is on stops being readable: what it lacks would make what was passed on look made up."""
    received: dict[str, Counter[bytes]] = {"client": Counter(), "server": Counter()}
    """What the attacker had from each side, to pass on to the other."""
    sent: list[tuple[float, str, int, int, bytes]] = []
    for n, leg in enumerate(legs):
        if leg.conversation.protocol != "lab" or "attacker" not in (leg.opener, leg.answerer):
            continue
        if leg.conversation.unreadable:
            return set()
        peer = leg.answerer if leg.opener == "attacker" else leg.opener
        for m, message in enumerate(leg.conversation.messages):
            if leg.sender(message) == "attacker":
                sent.append((message.time, peer, n, m, message.data))
            else:
                received[peer][message.data] += 1
    changed = set()
    for _, peer, n, m, data in sorted(sent):
        passed_on = received["server" if peer == "client" else "client"]
        if passed_on[data]:
            passed_on[data] -= 1
        else:
            changed.add((n, m))
    return changed


def _swapped_host_keys(legs: list[_Leg]) -> dict[tuple[int, int], str]:
    """(leg, message) for each SSH key exchange reply the attacker sent the client with a host key
    the server did not send the attacker: it signed the exchange with a key of its own. A relay that
    only passes bytes on sends the server's. None where a leg the attacker is on stops being
    readable, as for the lab channel's frames."""
    from_server: set[bytes] = set()
    sent: list[tuple[int, int, bytes]] = []
    for n, leg in enumerate(legs):
        if leg.conversation.protocol != "ssh" or "attacker" not in (leg.opener, leg.answerer):
            continue
        if leg.conversation.unreadable:
            return {}
        for m, message in enumerate(leg.conversation.messages):
            key = ssh_host_key(message)
            if key is None:
                continue
            if leg.sender(message) == "server":
                from_server.add(key)
            elif leg.sender(message) == "attacker" and leg.opener == "client":
                sent.append((n, m, key))
    return {(n, m): SWAPPED_HOST_KEY for n, m, key in sent if key not in from_server}


def _leg_arrows(number: int, leg: _Leg, changed: Mapping[tuple[int, int], str]) -> Iterator[_Arrow]:
    conversation = leg.conversation
    acked = False
    for segment in conversation.segments:
        label = {"S": "SYN", "SA": "SYN, ACK"}.get(segment.flags)
        if label is None and "R" in segment.flags:
            label = "RST"
        elif label is None and "F" in segment.flags:
            label = "FIN"
        elif label is None and segment.flags == "A" and segment.from_client and not acked:
            label, acked = "ACK", True
        if label is not None:
            yield _Arrow(segment.time, *leg.end(segment.from_client), label, "tcp")
    for m, message in enumerate(conversation.messages):
        label = message.label
        if label == "record":
            label = f"record, {len(message.data)} bytes"
        elif label == "encrypted":
            label = f"encrypted ({len(message.data)} bytes)"
        if (number, m) in changed:
            yield _Arrow(message.time, *leg.end(message.from_client), label, "changed", changed[number, m])
        else:
            yield _Arrow(message.time, *leg.end(message.from_client), label, leg.kind)
    for from_client, why in conversation.unreadable.items():
        yield _Arrow(conversation.segments[-1].time, *leg.end(from_client), f"unreadable: {why}", "tcp")


def _arp_arrows(capture: Capture, macs: Mapping[str, str], hosts: Mapping[str, str]) -> Iterator[_Arrow]:
    """The ARP frames between roles the capture knows the MACs of; a reply that puts another host's
    address at the attacker's MAC is the attacker's change."""
    role_of = {mac: role for role, mac in macs.items()}
    by_ip = {ip: role for role, ip in hosts.items()}
    for frame in capture.arp:
        source = role_of.get(frame.macs[0])
        if source is None:
            continue
        if frame.macs[1] == BROADCAST:  # drawn to the host it asks for
            target = by_ip.get(frame.target_ip, "server" if source == "client" else "client")
            what = f"ARP, to all: who has {frame.target_ip}?"
            yield _Arrow(frame.time, _side(source, target), _side(target, source), what, "arp")
            continue
        to = role_of.get(frame.macs[1])
        if to is None:
            continue
        ends = (_side(source, to), _side(to, source))
        if not frame.reply:
            yield _Arrow(frame.time, *ends, f"ARP: who has {frame.target_ip}?", "arp")
            continue
        forged = frame.sender_mac == macs.get("attacker") and frame.sender_ip != hosts.get("attacker")
        what = f"ARP: {frame.sender_ip} is at {frame.sender_mac}"
        yield _Arrow(frame.time, *ends, what, *(("changed", FORGED_ARP) if forged else ("arp", "")))
