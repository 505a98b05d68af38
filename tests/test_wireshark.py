"""The Wireshark dissector of the lab channel (wireshark/mitmlab.lua), run by tshark on real captures
of `mitmlab demo` on loopback (scapy's sniffer: root), and on hostile bytes (hypothesis)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcapng

from lab.cli.errors import EXIT_SETUP
from lab.containers import REPO
from tests.conftest import need_root, need_tshark
from tests.processes import mitmlab, without_privilege

pytestmark = [pytest.mark.loopback, pytest.mark.root]

DISSECTOR = REPO / "wireshark" / "mitmlab.lua"


def tshark(capture: Path, *args: str) -> list[str]:
    need_tshark()
    done = subprocess.run(
        ["tshark", "-r", str(capture), "-X", f"lua_script:{DISSECTOR}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Lua: Error" not in done.stderr, done.stderr
    return done.stdout.splitlines()


def captured(tmp_path: Path, *demo: str) -> Path:
    """`mitmlab demo DEMO --capture`: the run's frames on loopback (root)."""
    need_root()
    path = tmp_path / "demo.pcapng"
    done = mitmlab("demo", *demo, "--capture", str(path))
    assert done.returncode == 0, done.stderr
    assert f"Captured: {path}" in " ".join(done.stdout.split())
    return path


def test_a_demo_without_a_raw_socket_says_what_capturing_needs() -> None:
    """Root without CAP_NET_RAW where the tests run as root (CI)."""
    with tempfile.TemporaryDirectory() as scratch:
        capture = f"{scratch}/x.pcapng"
        done = without_privilege("-m", "lab", "demo", "replay", "--capture", capture, cwd=Path(scratch))
        assert done.returncode == EXIT_SETUP, done.stdout + done.stderr
        assert "a raw socket needs root, or NET_RAW" in done.stderr and "Traceback" not in done.stderr
        assert not Path(scratch, "x.pcapng").exists()


def test_the_client_hello_shows_the_suites_before_and_after_the_downgrade(tmp_path: Path) -> None:
    downgraded = captured(tmp_path, "downgrade")
    hellos = tshark(
        downgraded, "-Y", "mitmlab.handshake.type == 1", "-T", "fields", "-e", "mitmlab.handshake.suite"
    )
    assert hellos == ["0x0205,0x0105,0x0204,0x0104,0x0203,0x0103", "0x0103"]
    info = tshark(downgraded, "-Y", "mitmlab", "-T", "fields", "-e", "_ws.col.Info")
    assert "ClientHello (RSA_AES128_CTR)" in info
    assert "ServerHello (RSA_AES128_CTR)" in info
    assert "Alert: refused by transcript at finished" in info


def test_the_certificate_chain_and_the_records_are_decoded(tmp_path: Path) -> None:
    capture = captured(tmp_path, "bit-flip", "--no-mac")
    subjects = tshark(
        capture, "-Y", "mitmlab.handshake.type == 2", "-T", "fields", "-e", "x509sat.uTF8String"
    )
    assert subjects and all("bank.lab" in line and "mitm-lab CA" in line for line in subjects)
    records = tshark(
        capture, "-Y", "mitmlab.record.protection", "-T", "fields", "-e", "mitmlab.record.protection"
    )
    assert records and set(records) == {"AES128_CTR"}
    nonces = tshark(capture, "-Y", "mitmlab.record.nonce", "-T", "fields", "-e", "mitmlab.record.nonce")
    assert all(len(nonce) == 32 for nonce in nonces)  # 16 bytes, in hex


CLIENT_HELLO_HEADER = bytes([22, 0, 38, 1])
"""What the dissector recognises a conversation by: a handshake frame of a ClientHello's size."""


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=600))
def test_hostile_bytes_after_a_client_hello_header_never_break_the_dissector(
    tmp_path: Path, tail: bytes
) -> None:
    frame = (
        Ether()
        / IP(src="10.9.0.1", dst="10.9.0.2")
        / TCP(sport=40000, dport=4433, flags="PA", seq=1, ack=1)
        / (CLIENT_HELLO_HEADER + tail)
    )
    path = tmp_path / "hostile.pcapng"
    wrpcapng(str(path), [frame])
    lines = tshark(path, "-T", "fields", "-e", "_ws.col.Protocol", "-e", "_ws.col.Info")
    # Decoded (a malformed frame at worst), or held back as the start of a frame still to come.
    assert len(lines) == 1
    assert lines[0].startswith("MITMLAB") or "[TCP segment of a reassembled PDU]" in lines[0], lines[0]
