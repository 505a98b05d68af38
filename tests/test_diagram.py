"""What was on the wire, read back: the sequence diagrams the check draws from each run's capture
(lab.capture.diagram), with the attacker's changes in red; the lab key log that opens the records of
a capture; hostile captures (hypothesis), which never break the drawer; the screenshot in the docs."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
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
from lab.capture.diagram import Places, sequence_diagram
from lab.capture.streams import read_capture
from lab.channel.frames import Frame as LabFrame
from lab.channel.frames import FrameType
from lab.channel.keylog import KeyLogError, parse_keylog
from lab.channel.records import RecordLayer
from lab.channel.suites import RecordFeatures
from lab.containers import REPO
from lab.mitm.wire import SessionView
from tests.conftest import need_root

pytestmark = pytest.mark.system

SVG = "{http://www.w3.org/2000/svg}"
ATTACKS = ("eavesdrop", "bit-flip", "replay", "reflection", "downgrade", "pubkey-swap")
LIFELINES = {120: "client", 400: "attacker:client", 460: "attacker:server", 740: "server"}
SCREENSHOT = REPO / "docs" / "images" / "sequence-diagram.png"


@pytest.fixture(scope="module")
def checked(channel_check: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The lab channel's whole check (conftest), as root (the attacker captures on loopback): its
    directory, and the ladder's runs of the attacks these tests read."""
    need_root()
    out, report = channel_check
    runs = {s["id"]: s for s in report["scenarios"] if s["view"] == "ladder" and s["attack"] in ATTACKS}
    assert {run["attack"] for run in runs.values()} == set(ATTACKS)
    return out, runs


def changes(svg: ET.Element) -> list[tuple[str, str, str]]:
    """Each arrow drawn as the attacker's change: (its label, from, to)."""
    drawn = []
    for group in svg.iter(f"{SVG}g"):
        path = group.find(f"{SVG}path")
        if path is None or path.get("class") != "changed":
            continue
        [label] = [t.text or "" for t in group.findall(f"{SVG}text") if "l" in t.get("class", "").split()]
        start, _, end = path.get("d", "").split(" ")[:3]  # "M<from> <y> H<to> ..."
        drawn.append((label, LIFELINES[int(start[1:])], LIFELINES[int(end[1:])]))
    return drawn


def test_each_attacks_change_is_drawn_in_red_and_nothing_else(
    checked: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    out, runs = checked
    for run in runs.values():
        drawn = changes(ET.parse(out / run["evidence"]["diagram"]).getroot())
        labels = [label for label, _, _ in drawn]
        where = (run["attack"], run["label"], drawn)
        match run["attack"]:
            case "eavesdrop":  # it only reads
                assert drawn == [], where
            case "bit-flip" | "replay":  # a flipped, or a second, copy of the client's record
                assert len(drawn) == 1 and labels[0].startswith("record"), where
                assert drawn[0][1:] == ("attacker:server", "server"), where
            case "reflection":  # the client's own record, back to it
                assert len(drawn) == 1 and labels[0].startswith("record"), where
                assert drawn[0][1:] == ("attacker:client", "client"), where
            case "downgrade":  # the ClientHello, fewer suites; where there is one suite, nothing to take
                assert labels == ([] if run["verdict"] == "unaffected" else ["ClientHello"]), where
            case "pubkey-swap":  # a handshake of its own with each side
                assert {"ClientHello", "ServerHello"} <= set(labels), where


@pytest.mark.root
def test_the_report_inlines_every_runs_diagram(channel_check: tuple[Path, dict[str, Any]]) -> None:
    need_root()
    out, report = channel_check
    html = (out / "report.html").read_text()
    runs = {s["id"] for s in report["scenarios"]}
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="sequence"') == len(runs)
    assert "cdn" not in html.lower() and "<script src" not in html


def test_the_lab_key_log_opens_the_records_of_the_runs_capture(
    checked: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    """On both legs of a relayed session (bit-flip, encryption alone): the client's login, decrypted
    with the keys the client logged, and nothing but the capture and the key log."""
    out, runs = checked
    [run] = [r for r in runs.values() if r["attack"] == "bit-flip" and r["label"] == "encryption"]
    evidence = out / run["evidence"]["dir"]
    logged = parse_keylog((evidence / "lab.keylog").read_text())
    assert {keys.side for keys in logged} == {"client", "server"}
    capture = read_capture(Frame(float(p.time), bytes(p)) for p in rdpcap(str(evidence / "run.pcapng")))
    legs = [c for c in capture.conversations if c.protocol == "lab"]
    assert len(legs) == 2
    for leg in legs:
        view = SessionView(0)
        frames = [(m.from_client, LabFrame(FrameType(m.data[0]), m.data[3:])) for m in leg.messages]
        for from_client, frame in frames:
            view.observe(from_client, frame)
        assert view.client_hello is not None and view.suite is not None
        [keys] = [k for k in logged if k.side == "client" and k.client_random == view.client_hello.random]
        reader = RecordLayer(
            view.suite.record,
            write_keys=keys.server_write,
            read_keys=keys.client_write,
            sequence_numbers=RecordFeatures.SEQUENCE_NUMBERS in view.client_hello.features,
            random=bytes,
        )
        first = next(f for from_client, f in frames if from_client and f.type is FrameType.APPLICATION)
        _, plaintext = reader.open(first.body)
        assert json.loads(plaintext)["op"] == "login" and json.loads(plaintext)["user"] == "alice"


def test_a_key_log_line_that_is_not_one_is_a_typed_error() -> None:
    for line in ("LAB_SESSION_KEYS client 00", "LAB_SESSION_KEYS attacker " + "00 " * 6, "CLIENT_RANDOM a b"):
        with pytest.raises(KeyLogError, match="line 1"):
            parse_keylog(line)
    with pytest.raises(KeyLogError, match="line 2: a field is not hex"):
        parse_keylog("# comment\nLAB_SESSION_KEYS server zz 00 00 00 00 00\n")


def test_the_screenshot_in_the_docs_is_the_report_as_a_browser_shows_it(
    checked: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    """Headless Chromium draws the bit-flip run at `mac` (the record flipped on its way to the
    server, in red); MITMLAB_UPDATE_DOCS=1 puts it in docs/images/."""
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (./run-tests installs Debian's chromium as root)")
    out, runs = checked
    [run] = [r for r in runs.values() if r["attack"] == "bit-flip" and r["label"] == "mac"]
    shot = tmp_path / "diagram.png"
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=880,900",
            (out / run["evidence"]["diagram"]).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (880, 900)
    assert len(png) > 20_000  # lifelines, arrows and labels, not a blank page
    if os.environ.get("MITMLAB_UPDATE_DOCS"):
        shutil.copyfile(shot, SCREENSHOT)
    assert SCREENSHOT.exists(), "docs/images/sequence-diagram.png: run this test with MITMLAB_UPDATE_DOCS=1"


# Hostile captures -------------------------------------------------------------------------------------

CLIENT_HELLO = bytes([22, 0, 38, 1]) + bytes(32) + bytes([3]) + bytes([0, 2, 1, 3])
"""A lab-channel ClientHello frame: what makes a conversation the lab channel's."""

segments = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "FPU"]),
        st.integers(0, 2**32 - 1),
        st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda tail: CLIENT_HELLO + tail)),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(segments=segments, garbage=st.lists(st.binary(max_size=80), max_size=5), arp=st.booleans())
def test_a_hostile_capture_never_breaks_the_drawer(
    segments: list[tuple[bool, str, int, bytes]], garbage: list[bytes], arp: bool
) -> None:
    frames = [Frame(0.001 * n, data) for n, data in enumerate(garbage)]
    for n, (from_client, flags, seq, payload) in enumerate(segments):
        ends = (("10.9.0.2", 40000), ("10.9.0.3", 4433))
        (source, sport), (destination, dport) = ends if from_client else ends[::-1]
        packet = (
            Ether()
            / IP(src=source, dst=destination)
            / TCP(sport=sport, dport=dport, flags=flags, seq=seq)
            / payload
        )
        frames.append(Frame(1 + 0.001 * n, bytes(packet)))
    hosts = {"client": "10.9.0.2", "server": "10.9.0.3", "attacker": "10.9.0.4"} if arp else None
    svg = sequence_diagram(read_capture(frames), Places(frozenset({4433}), hosts=hosts))
    assert ET.fromstring(svg).tag == f"{SVG}svg"


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 400), flip=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_a_real_capture_cut_or_altered_anywhere_still_draws(
    checked: tuple[Path, dict[str, dict[str, Any]]], cut: int, flip: int, byte: int
) -> None:
    out, runs = checked
    [run] = [r for r in runs.values() if r["attack"] == "replay" and r["label"] == "mac"]
    frames = [Frame(float(p.time), bytes(p)) for p in rdpcap(str(out / run["evidence"]["capture"]))]
    frames = cut_and_flipped(frames, cut, flip, byte)
    svg = sequence_diagram(read_capture(frames), Places(frozenset()))
    assert ET.fromstring(svg).tag == f"{SVG}svg"


def segment(at: float, from_client: bool, flags: str, seq: int, payload: bytes = b"") -> Frame:
    ends = (("10.9.0.2", 40000), ("10.9.0.3", 4433))
    (source, sport), (destination, dport) = ends if from_client else ends[::-1]
    packet = Ether() / IP(src=source, dst=destination) / TCP(sport=sport, dport=dport, flags=flags, seq=seq)
    return Frame(at, bytes(packet / payload))


def test_bytes_that_stop_being_frames_end_their_direction_with_the_reason_and_keep_what_came_before() -> None:
    record = bytes([23, 0, 4]) + b"abcd"
    for split in (False, True):  # in one segment, and over two
        pieces = (
            [CLIENT_HELLO + record, b"\x99\x00\x01x"] if split else [CLIENT_HELLO + record + b"\x99\x00\x01x"]
        )
        frames = [segment(0, True, "S", 99)]
        seq = 100
        for n, piece in enumerate(pieces):
            frames.append(segment(1 + n, True, "PA", seq, piece))
            seq += len(piece)
        [conversation] = read_capture(frames).conversations
        assert conversation.protocol == "lab"
        assert [m.label for m in conversation.messages] == ["ClientHello", "record"]
        assert conversation.unreadable == {True: "not a lab frame: unknown frame type 153"}


def test_the_same_ports_used_again_are_two_connections_and_a_resent_syn_is_not() -> None:
    frames = [
        segment(0, True, "S", 10),
        segment(0.1, True, "S", 10),
        segment(0.2, False, "SA", 500),
        segment(1, True, "FA", 11),
        segment(2, True, "S", 9000),
        segment(2.1, False, "SA", 700),
    ]
    first, second = read_capture(frames).conversations
    assert [s.flags for s in first.segments] == ["S", "S", "SA", "FA"]
    assert [s.flags for s in second.segments] == ["S", "SA"]
    # first heard from the server, then a SYN: the SYN's sender is the client, of a new conversation
    late = read_capture([segment(0, False, "PA", 1, b"x"), segment(1, True, "S", 5)]).conversations
    assert [c.client for c in late] == [("10.9.0.3", 4433), ("10.9.0.2", 40000)]


# Plain HTTP (sslstrip) ---------------------------------------------------------------------------------


def arrows(svg: ET.Element) -> list[tuple[str, str, str]]:
    """Every arrow drawn: (its label, from, to)."""
    drawn = []
    for group in svg.iter(f"{SVG}g"):
        path = group.find(f"{SVG}path")
        if path is None:
            continue
        [label] = [t.text or "" for t in group.findall(f"{SVG}text") if "l" in t.get("class", "").split()]
        start, _, end = path.get("d", "").split(" ")[:3]
        drawn.append((label, LIFELINES[int(start[1:])], LIFELINES[int(end[1:])]))
    return drawn


def test_the_sslstrip_diagram_draws_the_plain_http_request_that_carried_the_password(
    clients_check: tuple[Path, dict[str, Any]],
) -> None:
    """On the client's leg (client to the attacker's plain-HTTP port): the request whose password the
    attacker read, named as the attacker's evidence names it, and the bank's answers back."""
    need_root()
    out, report = clients_check
    stripped = [s for s in report["scenarios"] if s["attack"] == "sslstrip" and s["verdict"] == "compromised"]
    assert stripped
    for run in stripped:
        [read] = [
            t["text"]
            for t in run["evidence"]["timeline"]
            if t["event"] == "read" and "READS the password" in t["text"]
        ]
        request = read.split("the request of ")[1].split(",")[0]  # "POST /login"
        drawn = arrows(ET.parse(out / run["evidence"]["diagram"]).getroot())
        assert (request, "client", "attacker:client") in drawn, (run["id"], drawn)
        answers = [
            label for label, source, target in drawn if (source, target) == ("attacker:client", "client")
        ]
        assert any(label.startswith("HTTP 303") for label in answers), (run["id"], answers)


def http(at: float, from_client: bool, seq: int, payload: bytes) -> Frame:
    return segment(at, from_client, "PA", seq, payload)


def test_plain_http_is_cut_into_requests_and_responses_by_their_lengths() -> None:
    post = b"POST /login HTTP/1.1\r\nHost: bank.lab\r\nContent-Length: 27\r\n\r\nuser=alice&password=s3cret!"
    get = b"GET /balance HTTP/1.1\r\nHost: bank.lab\r\n\r\n"
    see_other = b"HTTP/1.1 303 See Other\r\nLocation: /balance\r\nContent-Length: 0\r\n\r\n"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    to_the_close = b"HTTP/1.0 200 OK\r\n\r\nthe rest, up to the close"
    frames = [
        segment(0, True, "S", 99),
        http(1, True, 100, post[:50]),  # one request over two segments: drawn when it is whole
        http(2, True, 150, post[50:]),
        http(3, False, 1000, see_other + chunked[:30]),
        http(4, False, 1000 + len(see_other) + 30, chunked[30:] + to_the_close),
        http(5, True, 100 + len(post), get + b"GET /cut"),
    ]
    [conversation] = read_capture(frames).conversations
    assert conversation.protocol == "http"
    assert [(m.time, m.from_client, m.label) for m in conversation.messages] == [
        (2, True, "POST /login"),
        (3, False, "HTTP 303 See Other"),
        (4, False, "HTTP 200 OK"),
        (4, False, "HTTP 200 OK"),
        (5, True, "GET /balance"),
    ]
    assert [m.data for m in conversation.messages] == [post, see_other, chunked, to_the_close, get]
    assert conversation.unreadable == {True: "an HTTP message cut off after 8 bytes"}


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"\r\n",
                    b"\r\n\r\n",
                    b"Content-Length: ",
                    b"Transfer-Encoding: chunked",
                    b"-5",
                    b"ff",
                    b"9" * 30,
                ]
            ),
        ),
        max_size=30,
    ),
    answer=st.binary(max_size=200),
)
def test_hostile_plain_http_never_breaks_the_reader(pieces: list[bytes], answer: bytes) -> None:
    request = b"GET / HTTP/1.1\r\n" + b"".join(pieces)
    frames = [
        segment(0, True, "S", 99),
        http(1, True, 100, request),
        http(2, False, 5000, b"HTTP/1.1 200 OK\r\n" + answer),
    ]
    [conversation] = read_capture(frames).conversations
    assert conversation.protocol == "http"
    assert (
        b"".join(m.data for m in conversation.messages if m.from_client)
        == request[: sum(len(m.data) for m in conversation.messages if m.from_client)]
    )
    svg = sequence_diagram(read_capture(frames), Places(frozenset({4433})))
    assert ET.fromstring(svg).tag == f"{SVG}svg"


def cut_and_flipped(frames: list[Frame], cut: int, flip: int, byte: int) -> list[Frame]:
    """`frames` with one of them cut short by `cut` bytes and one of its bytes made `byte`."""
    frames = list(frames)
    target = frames[flip % len(frames)]
    altered = bytearray(target.data[: len(target.data) - cut % max(len(target.data), 1)])
    if altered:
        altered[flip % len(altered)] = byte
    frames[flip % len(frames)] = Frame(target.time, bytes(altered))
    return frames
