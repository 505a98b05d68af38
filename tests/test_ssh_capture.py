"""SSH read back from a capture (lab.capture.streams) and drawn (lab.capture.diagram): the identification
strings, the packets in the clear (KEXINIT, the key exchange named by the method the two KEXINITs
agree on, NEWKEYS), then each direction's bytes as encrypted; bytes that are no SSH end their
direction with the reason, and hostile ones (hypothesis) never break the reader; a host key the
server did not send is the attacker's change, in red. Last, a real check's host-key-swap runs."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from lab.capture import Frame
from lab.capture.diagram import SWAPPED_HOST_KEY, Places, sequence_diagram
from lab.capture.streams import Conversation, read_capture
from tests.test_diagram import cut_and_flipped

SVG = "{http://www.w3.org/2000/svg}"
LIFELINES = {120: "client", 400: "attacker:client", 460: "attacker:server", 740: "server"}
OPENSSH = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"
ASYNCSSH = b"SSH-2.0-AsyncSSH_2.23.1\r\n"
ATTACKER_PORT, SERVER_PORT = 2222, 22


def string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def packet(payload: bytes) -> bytes:
    """A binary packet before NEWKEYS (RFC 4253 §6): no MAC, a multiple of 8 bytes, 4 to 11 of padding."""
    padding = 4 + -(4 + 1 + len(payload) + 4) % 8
    return struct.pack("!IB", 1 + len(payload) + padding, padding) + payload + b"\xaa" * padding


def kexinit(*methods: str) -> bytes:
    lists = [",".join(methods).encode(), b"ssh-ed25519", *[b"aes128-ctr"] * 2, *[b"hmac-sha2-256"] * 2]
    lists += [b"none"] * 2 + [b""] * 2
    return packet(bytes([20]) + b"\x11" * 16 + b"".join(map(string, lists)) + b"\x00" + bytes(4))


def reply(host_key: bytes, kind: int = 31) -> bytes:
    return packet(bytes([kind]) + string(host_key) + string(b"\x02" * 32) + string(b"signature"))


INIT = packet(bytes([30]) + string(b"\x01" * 32))
NEWKEYS = packet(bytes([21]))


class Wire:
    """One TCP connection's frames, as a capture holds them: a SYN, then each side's segments with
    their sequence numbers."""

    def __init__(self, client_port: int = 40000, server_port: int = SERVER_PORT) -> None:
        self.ports = (client_port, server_port)
        self.seq = {True: 100, False: 5000}
        self.frames = [self._frame(0.0, True, "S", 99, b"")]

    def send(self, at: float, from_client: bool, payload: bytes) -> Wire:
        self.frames.append(self._frame(at, from_client, "PA", self.seq[from_client], payload))
        self.seq[from_client] += len(payload)
        return self

    def _frame(self, at: float, from_client: bool, flags: str, seq: int, payload: bytes) -> Frame:
        sport, dport = self.ports if from_client else self.ports[::-1]
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq)
        return Frame(at, bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / tcp / payload))

    def read(self) -> Conversation:
        [conversation] = read_capture(self.frames).conversations
        return conversation


def labels(conversation: Conversation) -> list[tuple[float, bool, str]]:
    return [(m.time, m.from_client, m.label) for m in conversation.messages]


def test_the_banners_and_the_key_exchange_are_named_and_what_follows_newkeys_is_encrypted() -> None:
    client_kexinit = kexinit("sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "ext-info-c")
    server_kexinit = kexinit(
        "curve25519-sha256", "diffie-hellman-group14-sha256", "kex-strict-s-v00@openssh.com"
    )
    wire = (
        Wire()
        .send(1, False, OPENSSH + server_kexinit)  # a banner and a packet in one segment
        .send(2, True, OPENSSH)
        .send(3, True, client_kexinit[:50])  # a packet over two segments: drawn when it is whole
        .send(4, True, client_kexinit[50:] + INIT)
        .send(5, False, reply(b"server host key") + NEWKEYS + b"\x01encrypted, in the same segment")
        .send(6, True, NEWKEYS)
        .send(7, True, b"\x02" * 44)
        .send(8, False, b"\x03" * 36)
    )
    conversation = wire.read()
    assert conversation.protocol == "ssh"
    assert conversation.agreed == "curve25519-sha256"  # the client's first that the server has
    assert labels(conversation) == [
        (1, False, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
        (1, False, "KEXINIT"),
        (2, True, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
        (4, True, "KEXINIT"),
        (4, True, "KEX_ECDH_INIT"),
        (5, False, "KEX_ECDH_REPLY"),
        (5, False, "NEWKEYS"),
        (5, False, "encrypted"),
        (6, True, "NEWKEYS"),
        (7, True, "encrypted"),
        (8, False, "encrypted"),
    ]
    encrypted = [m.data for m in conversation.messages if m.label == "encrypted"]
    assert encrypted == [b"\x01encrypted, in the same segment", b"\x02" * 44, b"\x03" * 36]
    assert conversation.unreadable == {}
    drawn = arrows(ET.fromstring(sequence_diagram(read_capture(wire.frames), Places(frozenset()))))
    assert [label for label, *_ in drawn if label.startswith("encrypted")] == [
        "encrypted (31 bytes)",
        "encrypted (44 bytes)",
        "encrypted (36 bytes)",
    ]


@pytest.mark.parametrize(
    ("method", "sent", "named"),
    [
        (
            "diffie-hellman-group-exchange-sha256",
            [(True, 34), (False, 31), (True, 32), (False, 33)],
            ["KEX_DH_GEX_REQUEST", "KEX_DH_GEX_GROUP", "KEX_DH_GEX_INIT", "KEX_DH_GEX_REPLY"],
        ),
        ("diffie-hellman-group14-sha256", [(True, 30), (False, 31)], ["KEXDH_INIT", "KEXDH_REPLY"]),
        (
            "sntrup761x25519-sha512@openssh.com",
            [(True, 30), (False, 31)],
            ["KEX_ECDH_INIT", "KEX_ECDH_REPLY"],
        ),
        ("gss-group14-sha256-", [(True, 30), (False, 31)], ["SSH message 30", "SSH message 31"]),
    ],
)
def test_the_key_exchange_messages_are_named_by_the_agreed_method_and_numbered_otherwise(
    method: str, sent: list[tuple[bool, int]], named: list[str]
) -> None:
    wire = Wire().send(1, True, OPENSSH + kexinit(method)).send(1, False, ASYNCSSH + kexinit("x", method))
    for n, (from_client, kind) in enumerate(sent):
        wire.send(2 + n, from_client, packet(bytes([kind]) + string(b"\x05" * 8)))
    conversation = wire.read()
    assert conversation.agreed == method
    assert [m.label for m in conversation.messages][4:] == named
    # one KEXINIT only: no method agreed, and its messages by number
    lone = Wire().send(1, True, OPENSSH + kexinit(method) + INIT).send(2, False, ASYNCSSH).read()
    assert lone.agreed == ""
    assert [m.label for m in lone.messages] == [
        OPENSSH[:-2].decode(),
        "KEXINIT",
        "SSH message 30",
        "SSH-2.0-AsyncSSH_2.23.1",
    ]


@pytest.mark.parametrize(
    ("client", "server", "drawn", "why"),
    [
        (  # garbage after a banner: a length no packet has
            OPENSSH + kexinit("curve25519-sha256"),
            OPENSSH + b"\x00\x01\x00\x00\x07" + b"x" * 40,
            ["KEXINIT"],
            {False: "not an SSH packet: 65536 bytes, 7 of them padding"},
        ),
        (  # a packet whose length is no multiple of 8, before any cipher
            OPENSSH,
            OPENSSH + b"\x00\x00\x00\x0d\x04" + b"y" * 13,
            [],
            {False: "not an SSH packet: 13 bytes, 4 of them padding"},
        ),
        (  # a packet cut off by the capture's end
            OPENSSH + kexinit("curve25519-sha256")[:100],
            OPENSSH,
            [],
            {True: "an SSH packet cut off after 100 bytes"},
        ),
        (  # a banner cut off
            OPENSSH,
            OPENSSH[:12],
            [],
            {False: "an SSH identification string cut off after 12 bytes"},
        ),
        (  # not SSH at all in one direction
            OPENSSH,
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            [],
            {False: "not an SSH identification string: b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'"},
        ),
        (  # SSH 1: its banner, and nothing read after it
            b"SSH-1.5-OpenSSH_3.9\n\x00\x00\x01\x04",
            OPENSSH,
            ["SSH-1.5-OpenSSH_3.9"],
            {True: "SSH 1.5, not SSH 2: not read"},
        ),
    ],
)
def test_bytes_that_are_no_ssh_end_their_direction_with_the_reason_and_keep_what_came_before(
    client: bytes, server: bytes, drawn: list[str], why: dict[bool, str]
) -> None:
    wire = Wire().send(1, True, client).send(2, False, server)
    conversation = wire.read()
    assert conversation.protocol == "ssh"
    banners = {OPENSSH[:-2].decode()}
    assert [m.label for m in conversation.messages if m.label not in banners] == drawn
    assert conversation.unreadable == why
    unreadable = [
        label
        for label, *_ in arrows(
            ET.fromstring(sequence_diagram(read_capture(wire.frames), Places(frozenset())))
        )
        if label.startswith("unreadable: ")
    ]
    assert unreadable == [f"unreadable: {reason}" for reason in why.values()]


def test_a_stream_that_does_not_open_with_ssh_is_not_read_as_ssh() -> None:
    assert Wire().send(1, True, b"SSH 2.0\r\n").send(2, False, b"hello").read().protocol == "tcp"
    assert Wire().send(1, True, b"SS").read().protocol == "tcp"  # too little to tell
    assert Wire().send(1, False, b"SSH-").read().protocol == "ssh"  # the server's banner, begun


def arrows(svg: ET.Element) -> list[tuple[str, str, str, str, str]]:
    """Every arrow drawn: (its label, from, to, its class, its title)."""
    drawn = []
    for group in svg.iter(f"{SVG}g"):
        path = group.find(f"{SVG}path")
        if path is None:
            continue
        [label] = [t.text or "" for t in group.findall(f"{SVG}text") if "l" in t.get("class", "").split()]
        start, _, end = path.get("d", "").split(" ")[:3]  # "M<from> <y> H<to> ..."
        title = group.findtext(f"{SVG}title") or ""
        drawn.append(
            (label, LIFELINES[int(start[1:])], LIFELINES[int(end[1:])], path.get("class", ""), title)
        )
    return drawn


def relayed(attackers_key: bytes) -> list[Frame]:
    """The client's leg (to the attacker's port) and the attacker's to the server, the server signing
    with its key and the attacker with `attackers_key`."""
    hello = kexinit("curve25519-sha256")
    to_attacker = (
        Wire(40001, ATTACKER_PORT)
        .send(1, True, OPENSSH + hello + INIT)
        .send(5, False, OPENSSH + hello + reply(attackers_key) + NEWKEYS)
    )
    to_server = (
        Wire(40002, SERVER_PORT)
        .send(2, True, OPENSSH + hello + INIT)
        .send(3, False, OPENSSH + hello + reply(b"the server's key") + NEWKEYS + b"\x09" * 52)
    )
    return to_attacker.frames + to_server.frames


def test_a_host_key_the_server_did_not_send_is_drawn_as_the_attackers_and_one_passed_on_is_not() -> None:
    places = Places(frozenset({ATTACKER_PORT}))
    swapped = arrows(ET.fromstring(sequence_diagram(read_capture(relayed(b"the attacker's key")), places)))
    assert [a for a in swapped if a[3] == "changed"] == [
        ("KEX_ECDH_REPLY", "attacker:client", "client", "changed", SWAPPED_HOST_KEY)
    ]
    assert ("KEX_ECDH_REPLY", "server", "attacker:server", "c1", "") in swapped
    assert ("encrypted (52 bytes)", "server", "attacker:server", "c1", "") in swapped
    passed_on = arrows(ET.fromstring(sequence_diagram(read_capture(relayed(b"the server's key")), places)))
    assert [a for a in passed_on if a[3] == "changed"] == []
    assert ("KEX_ECDH_REPLY", "attacker:client", "client", "c0", "") in passed_on


pieces = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([kexinit("curve25519-sha256"), INIT, reply(b"k"), NEWKEYS, b"\x00\x00\x00", b"\r\n"]),
        st.binary(min_size=1, max_size=12).map(lambda payload: packet(payload)),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    client=pieces,
    server=pieces,
    banner=st.sampled_from([OPENSSH, b"SSH-2.0-x\n", b"SSH-", b"SSH-2.0-" + b"a" * 300 + b"\r\n"]),
    cuts=st.lists(st.integers(1, 200), max_size=6),
)
def test_hostile_ssh_never_breaks_the_reader_and_what_it_reads_is_the_stream(
    client: list[bytes], server: list[bytes], banner: bytes, cuts: list[int]
) -> None:
    streams = {True: OPENSSH + b"".join(client), False: banner + b"".join(server)}
    wire = Wire(40003, ATTACKER_PORT)
    for from_client, data in streams.items():
        at = 0
        for cut in [*cuts, len(data)]:  # the stream in segments, cut anywhere
            if at < len(data):
                wire.send(1 + at / 1000, from_client, data[at : at + cut])
                at += cut
    [conversation] = read_capture(wire.frames).conversations
    assert conversation.protocol == "ssh"
    for from_client, data in streams.items():
        read = b"".join(m.data for m in conversation.messages if m.from_client == from_client)
        assert data.startswith(read)  # in order, nothing skipped, nothing made up
        assert read == data or from_client in conversation.unreadable
    svg = sequence_diagram(read_capture(wire.frames), Places(frozenset({ATTACKER_PORT})))
    assert ET.fromstring(svg).tag == f"{SVG}svg"


# A real check --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked(ssh_check: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """The session's ssh view, checked as root (the attacker captures on loopback)."""
    return ssh_check


def runs(report: dict[str, Any], attack: str) -> list[dict[str, Any]]:
    return [s for s in report["scenarios"] if s["attack"] == attack]


def drawn(out: Path, run: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return arrows(ET.parse(out / run["evidence"]["diagram"]).getroot())


@pytest.mark.system
@pytest.mark.root
def test_a_host_key_swap_run_draws_both_legs_key_exchanges_and_encrypted_packets_after_newkeys(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    """The first contact (tofu): the client takes the attacker's key, and the relay goes on to the
    server; each leg shows both banners, both KEXINITs, the ECDH pair, NEWKEYS each way and then only
    encrypted packets; the reply the attacker sent the client is red, nothing else is."""
    out, report = checked
    [run] = [r for r in runs(report, "host-key-swap") if r["label"] == "tofu"]
    diagram = drawn(out, run)
    for opener, answerer in (("client", "attacker:client"), ("attacker:server", "server")):
        # the connection (its colour) that ran a key exchange: the relay may also have opened one to
        # the server that it closed after the banners
        [kind] = {k for label, s, _, k, _ in diagram if label == "KEXINIT" and s == opener}
        for source, target in ((opener, answerer), (answerer, opener)):
            labels = [
                label
                for label, s, t, k, _ in diagram
                if (s, t) == (source, target) and k in (kind, "changed")
            ]
            assert labels[0].startswith("SSH-2.0-OpenSSH_9.2p1"), (source, target, labels)
            exchange = "KEX_ECDH_INIT" if source == opener else "KEX_ECDH_REPLY"
            assert labels[1:4] == ["KEXINIT", exchange, "NEWKEYS"], (source, target, labels)
            after = labels[4:]
            assert after and all(label.startswith("encrypted (") for label in after), (source, target, after)
    red = [(label, s, t) for label, s, t, kind, _ in diagram if kind == "changed"]
    assert red == [("KEX_ECDH_REPLY", "attacker:client", "client")]


@pytest.mark.system
@pytest.mark.root
def test_only_the_swapped_host_key_is_red_and_a_relay_that_passes_bytes_on_changes_nothing(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    out, report = checked
    swaps, clean = runs(report, "host-key-swap"), [s for s in report["scenarios"] if s["attack"] is None]
    assert len(swaps) == len(clean) == 8
    for run in swaps:  # every configuration: the client saw the attacker's key, whatever it made of it
        red = [(label, s, t) for label, s, t, kind, _ in drawn(out, run) if kind == "changed"]
        assert red == [("KEX_ECDH_REPLY", "attacker:client", "client")], run["label"]
    for run in clean:
        diagram = drawn(out, run)
        assert [a for a in diagram if a[3] == "changed"] == [], run["label"]
        assert ("KEX_ECDH_REPLY", "attacker:client", "client") in [a[:3] for a in diagram]


@pytest.mark.system
@pytest.mark.root
@settings(max_examples=50, deadline=None)
@given(cut=st.integers(0, 400), flip=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_a_real_ssh_capture_cut_or_altered_anywhere_still_draws(
    checked: tuple[Path, dict[str, Any]], cut: int, flip: int, byte: int
) -> None:
    out, report = checked
    [run] = [r for r in runs(report, "host-key-swap") if r["label"] == "tofu"]
    frames = [Frame(float(p.time), bytes(p)) for p in rdpcap(str(out / run["evidence"]["capture"]))]
    frames = cut_and_flipped(frames, cut, flip, byte)
    svg = sequence_diagram(read_capture(frames), Places(frozenset()))
    assert ET.fromstring(svg).tag == f"{SVG}svg"
