"""A run's capture (lab.capture): real frames sniffed on loopback (root), each once; the size cap; the
message without the privilege; a TLS session that tshark decrypts from the file alone."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from scapy.utils import rdpcap

from lab.capture import RunCapture, write_pcapng
from lab.containers import REPO
from lab.state import StateDir
from tests.conftest import need_root, need_tshark


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


def test_a_capture_past_its_cap_keeps_what_fits_and_counts_the_rest() -> None:
    need_root()
    server, port = listener()
    capture = RunCapture("lo", f"tcp port {port}", max_bytes=300)
    capture.start()
    exchange(server, port, b"x" * 1000)
    captured = capture.stop()
    server.close()
    assert captured.size <= 300 and captured.dropped >= 2


def test_without_a_raw_socket_the_capture_says_what_it_needs() -> None:
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    code = (
        "from lab.capture import CaptureError, RunCapture\n"
        "try:\n"
        "    RunCapture('lo', 'tcp port 9').start()\n"
        "except CaptureError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [*as_nobody, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cannot capture on lo: a raw socket needs root, or NET_RAW"), done.stdout


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
    decoded = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-d",
            f"tcp.port=={port},tls",
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.file_data",
            "-e",
            "http.request.method",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.split("\n")[0] == "user=alice&password=s3cr\tPOST", decoded.stdout
