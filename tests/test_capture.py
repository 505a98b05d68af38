"""A run's capture (lab.capture): real frames sniffed on loopback (root), each once; the size cap; the
message without the privilege; a TLS session that tshark decrypts from the file alone; the attacker's
capture control; every run of a check captured and linked, and a real-TLS run's password read back
from its capture alone."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from lab.capture import RunCapture
from lab.capture.pcapng import write_pcapng
from lab.channel.protections import NONE
from lab.control import ControlError, ControlServer, request
from lab.roles.client import run_session
from lab.state import StateDir
from tests.conftest import need_root, need_tshark
from tests.processes import mitmlab, without_privilege
from tests.world import SESSION, bank_behind_attacker

pytestmark = pytest.mark.system


def listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


def exchange(server: socket.socket, port: int, payload: bytes) -> None:
    """One TCP connection on loopback: `payload` one way, echoed back."""
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    client.sendall(payload)
    accepted.sendall(accepted.recv(len(payload), socket.MSG_WAITALL))
    client.recv(len(payload), socket.MSG_WAITALL)
    client.close()
    accepted.close()


@pytest.mark.root
def test_loopback_frames_are_kept_once_and_written_as_pcapng(tmp_path: Path) -> None:
    need_root()
    server, port = listener()
    capture = RunCapture("lo", f"tcp port {port}")
    capture.start()
    exchange(server, port, b"the password is hunter2")
    captured = capture.stop()
    server.close()
    datas = [frame.data for frame in captured.frames]
    assert len(datas) == len(set(datas)) and len(datas) >= 8  # handshake, data both ways, close
    assert sum(b"the password is hunter2" in d for d in datas) == 2  # sent, and echoed
    path = tmp_path / "run.pcapng"
    write_pcapng(path, captured.frames)
    assert [bytes(p) for p in rdpcap(str(path))] == datas


@pytest.mark.root
def test_a_capture_past_its_cap_keeps_what_fits_and_counts_the_rest() -> None:
    need_root()
    server, port = listener()
    capture = RunCapture("lo", f"tcp port {port}", max_bytes=300)
    capture.start()
    exchange(server, port, b"x" * 1000)
    captured = capture.stop()
    server.close()
    assert captured.size <= 300 and captured.dropped >= 2


def test_without_a_raw_socket_the_capture_says_what_it_needs(tmp_path: Path) -> None:
    """Root without CAP_NET_RAW where the tests run as root (CI): refused all the same."""
    code = (
        "from lab.capture import CaptureError, RunCapture\n"
        "try:\n"
        "    RunCapture('lo', 'tcp port 9').start()\n"
        "except CaptureError as exc:\n"
        "    print(exc)\n"
    )
    done = without_privilege("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cannot capture on lo: a raw socket needs root, or NET_RAW"), done.stdout


def decrypted_http(path: Path, *fields: str) -> list[str]:
    """tshark's reading of `path`, every TCP port that carries TLS decoded as TLS, with the key log
    the file holds and nothing else."""
    tls_ports = {
        frame[TCP].dport
        for frame in map(Ether, map(bytes, rdpcap(str(path))))
        if frame.haslayer(TCP) and bytes(frame[TCP].payload)[:2] == b"\x16\x03"
    }
    decode_as = [arg for port in sorted(tls_ports) for arg in ("-d", f"tcp.port=={port},tls")]
    fields_args = [arg for field in fields for arg in ("-e", field)]
    decoded = subprocess.run(
        ["tshark", "-r", str(path), *decode_as, "-Y", "http.request", "-T", "fields", *fields_args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    return decoded.stdout.splitlines()


@pytest.mark.root
def test_a_tls_session_decrypts_from_the_file_alone(state: StateDir, tmp_path: Path) -> None:
    """The client's key log embedded as a Decryption Secrets Block: tshark needs no other file."""
    need_root()
    need_tshark()
    keylog = tmp_path / "client.keylog"
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(state.server_cert, state.server_key)
    dialled = ssl.create_default_context(cafile=str(state.ca_cert))
    dialled.keylog_filename = str(keylog)
    server, port = listener()
    request = b"POST /login HTTP/1.1\r\nHost: bank.lab\r\nContent-Length: 24\r\n\r\nuser=alice&password=s3cr"

    def serve() -> None:
        accepted, _ = server.accept()
        with served.wrap_socket(accepted, server_side=True) as tls:
            tls.recv(len(request))
            tls.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    thread = threading.Thread(target=serve)
    capture = RunCapture("lo", f"tcp port {port}")
    capture.start()
    thread.start()
    with dialled.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="bank.lab"
    ) as tls:
        tls.sendall(request)
        tls.recv(100)
    thread.join(10)
    captured = capture.stop()
    server.close()
    path = tmp_path / "tls.pcapng"
    write_pcapng(path, captured.frames, tls_keylog=keylog.read_text())
    assert (
        decrypted_http(path, "http.file_data", "http.request.method")[0] == "user=alice&password=s3cr\tPOST"
    )


@pytest.mark.root
def test_the_attackers_capture_control(state: StateDir) -> None:
    """A bad request is refused, an interface that is not there says why, and on loopback (root) the
    frames of both legs of a session come back, once each; past a size cap, counted and not kept."""
    need_root()

    async def scenario() -> None:
        async with bank_behind_attacker(state, NONE) as (role, attacker_port, server_port):
            control = ControlServer(role.control_handlers(), secret=state.secret())
            port = await control.start("127.0.0.1", 0)

            async def call(cmd: str, **params: object) -> dict[str, object]:
                return await request("127.0.0.1", port, cmd, params, secret=state.secret())

            try:
                bad_requests: list[dict[str, object]] = [
                    {"ports": []},
                    {"ports": ["80"]},
                    {"ports": [70000]},
                    {"interface": 1, "ports": [80]},
                ]
                for bad in bad_requests:
                    with pytest.raises(ControlError, match="a list of TCP ports"):
                        await call("capture", **bad)
                missing = await call("capture", interface="nosuch0", ports=[attacker_port])
                assert missing["capturing"] is False and "cannot capture on nosuch0" in str(missing["why"])
                nothing = await call("capture_take")
                assert (nothing["frames"], nothing["dropped"]) == ([], 0)
                assert (await call("capture", interface="lo", ports=[attacker_port, server_port]))[
                    "capturing"
                ]
                await run_session(state, "127.0.0.1", attacker_port, NONE, list(SESSION))
                await call("idle")
                taken = await call("capture_take")
                with pytest.raises(ControlError, match="max_bytes"):
                    await call("capture", ports=[attacker_port], max_bytes=2**40)
                await call("capture", interface="lo", ports=[attacker_port, server_port], max_bytes=2000)
                await run_session(state, "127.0.0.1", attacker_port, NONE, list(SESSION))
                await call("idle")
                capped = await call("capture_take")
            finally:
                await control.stop()
        assert isinstance(capped["frames"], list) and isinstance(capped["dropped"], int)
        assert (
            sum(len(base64.b64decode(data)) for _, data in capped["frames"])
            <= 2000
            < 2000 + capped["dropped"]
        )
        assert isinstance(taken["frames"], list)
        datas = [base64.b64decode(data) for _, data in taken["frames"]]
        assert len(datas) == len(set(datas)) and taken["dropped"] == 0
        legs = {
            frozenset((Ether(d)[TCP].sport, Ether(d)[TCP].dport)) & {attacker_port, server_port}
            for d in datas
        }
        assert legs == {frozenset({attacker_port}), frozenset({server_port})}

    asyncio.run(scenario())


def test_a_check_captures_every_run_and_links_it_or_says_why_not(
    channel_check: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The lab channel's whole check (root: the attacker captures on loopback); then one view with
    --no-capture, which the report and the terminal say."""
    need_root()
    out, report = channel_check
    assert report["summary"]["captured"] == report["summary"]["runs"] > 0
    assert report["summary"]["capture_notes"] == []
    html = (out / "report.html").read_text()
    for scenario in report["scenarios"]:
        capture = scenario["evidence"]["capture"]
        assert capture == f"{scenario['evidence']['dir']}/run.pcapng" and f'href="{capture}"' in html
        assert (out / capture).stat().st_size > 0
    assert len(rdpcap(str(out / capture))) >= 6  # a TCP handshake, a ClientHello, a close at least
    off = tmp_path / "off"
    done = mitmlab(
        "check", "--attack", "replay", "--view", "ladder", "--out", str(off), "--no-capture", timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((off / "report.json").read_text())["summary"]
    assert summary["captured"] == 0 and summary["capture_notes"] == [
        "capturing was turned off (--no-capture)"
    ]
    assert not list(off.glob("evidence/*/run.pcapng"))
    assert "runs not captured: capturing was turned off" in " ".join(done.stdout.split())


CARELESS = """
import os, pathlib, subprocess, sys
form = f"user={os.environ['MITMLAB_USER']}&password={os.environ['MITMLAB_PASSWORD']}"
pathlib.Path(sys.argv[3]).write_text(form)
done = subprocess.run(["curl", "-sSk", "--resolve", sys.argv[1], "-d", form, sys.argv[2] + "login"])
sys.exit(done.returncode)
"""


@pytest.mark.root
def test_a_real_tls_run_shows_the_password_from_its_capture_alone(tmp_path: Path) -> None:
    """curl -k through self-signed: the run's pcapng holds mitmproxy's key log (both legs) and curl's."""
    need_root()
    need_tshark()
    script = tmp_path / "careless.py"
    script.write_text(CARELESS)
    out = tmp_path / "probe"
    done = mitmlab(
        "probe",
        "--attack",
        "self-signed",
        "--out",
        str(out),
        "--",
        sys.executable,
        str(script),
        "{resolve}",
        "{url}",
        str(tmp_path / "form"),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    [run] = [s for s in report["scenarios"] if s["attack"] == "self-signed"]
    assert run["verdict"] == "compromised"
    form = (tmp_path / "form").read_text()
    assert "password=" in form
    # the client's leg and the attacker's to the bank: the password crossed both, and both decrypt
    # (the attacker's leg also carries the transfer it forged with the stolen cookie)
    requests = decrypted_http(out / run["evidence"]["capture"], "http.file_data")
    assert requests.count(form) == 2, requests
    # its diagram: the client's TLS connection to the attacker, the attacker's to the bank (one more
    # for the forged transfer), each opened by a ClientHello; none of it red (each leg is encrypted
    # under its own keys: the lab does not compare them)
    diagram = ET.fromstring((out / run["evidence"]["diagram"]).read_text())
    texts = [t.text or "" for t in diagram.iter("{http://www.w3.org/2000/svg}text")]
    legs = [t.split(": ", 1)[1] for t in texts if t.startswith("connection ")]
    assert len([leg for leg in legs if leg.startswith("client ") and " to attacker " in leg]) == 1, legs
    assert len([leg for leg in legs if leg.startswith("attacker ") and " to server " in leg]) >= 1, legs
    assert all(leg.endswith(", TLS") for leg in legs), legs
    assert texts.count("TLS ClientHello") == texts.count("TLS ServerHello") == len(legs)
    assert not [e for e in diagram.iter() if e.get("class") == "changed"]
