"""The command line as a user meets it: real processes, exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.mitm import live_view
from lab.state import StateDir
from tests.processes import background, free_port, mitmlab
from tests.world import evidence_dicts

pytestmark = pytest.mark.loopback


@pytest.fixture(scope="module")
def served(
    state_template: StateDir, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StateDir, int]]:
    """One server for the module's client tests, and its state: only one of them moves money (the
    others are refused, or declined by the bank), so each sees the ledger as the lab made it."""
    here = tmp_path_factory.mktemp("served")
    state = StateDir(here / "state")
    shutil.copytree(state_template.root, state.root)
    where = ("--state-dir", str(state.root))
    with background(
        "server", "--listen", "127.0.0.1:0", "--web-ports", "0,0", *where, port_file=here / "port"
    ) as port:
        yield state, port


def client(state: StateDir, port: int, *args: str) -> tuple[int, str]:
    result = mitmlab("client", "--connect", f"127.0.0.1:{port}", "--state-dir", str(state.root), *args)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout + result.stderr


def test_help_explains_the_lab_and_every_switch() -> None:
    top = mitmlab("--help")
    assert top.returncode == 0 and "man-in-the-middle" in top.stdout
    sub = mitmlab("client", "--help")
    for flag in ("--no-ca-trust", "--pinning", "--no-per-direction-keys", "--profile", "Exit codes"):
        assert flag in sub.stdout


def test_balance_and_transfer_through_a_real_server(served: tuple[StateDir, int]) -> None:
    code, out = client(*served, "balance")
    assert code == 0 and "balance: 1000" in out and "ECDHE_AES128_GCM" in out
    code, out = client(*served, "transfer", "100", "bob")
    assert code == 0 and "balance 900" in out


def test_a_refusal_exits_non_zero_naming_the_protection_and_step(served: tuple[StateDir, int]) -> None:
    code, out = client(*served, "--server-name", "other.lab", "balance")
    assert code == 3
    assert "REFUSED by hostname at step server_certificate" in " ".join(out.split())
    code, _ = client(*served, "--no-hostname", "--server-name", "other.lab", "balance")
    assert code == 0


def test_the_peers_refusal_is_reported_with_its_own_exit_code(served: tuple[StateDir, int]) -> None:
    code, out = client(*served, "--no-transcript", "balance")
    assert code == 4 and "transcript" in out


def test_the_bank_declining_is_not_a_channel_failure(served: tuple[StateDir, int]) -> None:
    code, out = client(*served, "transfer", "99999", "bob")
    assert code == 6 and "insufficient funds" in out


def test_user_mistakes_get_clear_messages(state: StateDir, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    code, out = client(state, closed_port, "balance")
    assert code == 5 and "connection refused" in out

    result = mitmlab("client", "--state-dir", str(tmp_path / "nowhere"), "balance")
    assert result.returncode == 7 and "mitmlab init" in result.stderr

    result = mitmlab("client", "--connect", "localhost", "balance")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr

    result = mitmlab("client", "--profile", "paranoid", "balance")
    assert result.returncode == 2 and "recommended" in result.stderr


def test_a_port_in_use_is_a_clear_error(state: StateDir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        where = ("--web-ports", "0,0", "--state-dir", str(state.root))
        result = mitmlab("server", "--listen", f"127.0.0.1:{port}", *where)
        role = mitmlab("role", "server", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state.root))
    assert result.returncode == 5 and "cannot listen" in result.stderr and "Traceback" not in result.stderr
    assert (
        role.returncode == 5
        and "the server role cannot start" in role.stderr
        and "Traceback" not in role.stderr
    )


def test_init_makes_a_state_directory(tmp_path: Path) -> None:
    result = mitmlab("init", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 0 and StateDir(tmp_path / "s").exists()
    again = mitmlab("init", "--state-dir", str(tmp_path / "s"))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    secret = StateDir(tmp_path / "s").secret()
    fresh = mitmlab("init", "--fresh", "--state-dir", str(tmp_path / "s"))
    assert fresh.returncode == 0 and StateDir(tmp_path / "s").secret() != secret  # new keys, new secret
    (tmp_path / "homework").mkdir()
    (tmp_path / "homework" / "essay.txt").write_text("not lab state")
    typo = mitmlab("init", "--fresh", "--state-dir", str(tmp_path / "homework"))
    assert typo.returncode == 7 and "not a lab state directory" in typo.stderr
    assert (tmp_path / "homework" / "essay.txt").exists()


def test_demo_narrates_an_attack_and_who_won() -> None:
    """The attack that works is the help's example, `mitmlab demo bit-flip --no-mac`, which
    test_help_examples runs as written; here the protection that stops it, and no attack."""
    strong = mitmlab("demo", "bit-flip")
    assert "BLOCKED by mac at record (server)" in " ".join(strong.stdout.split())
    clean = mitmlab("demo")
    assert "EXECUTES transfer #1: alice -> bob 100" in clean.stdout and "No attack" in clean.stdout


def test_demo_makes_the_pin_first_when_pinning_is_on() -> None:
    result = mitmlab("demo", "self-signed", "--pinning", "--no-ca-trust")
    text = " ".join(result.stdout.split())
    assert "First a clean session straight to the server" in text and "key pin recorded" in text
    assert "BLOCKED by pinning at server_certificate (client)" in text


def test_check_with_one_view_and_one_attack(
    check_over_a_report: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = check_over_a_report
    report = json.loads((out / "report.json").read_text())
    assert report["views"] == ["ablation"] and report["attacks"] == ["eavesdrop"]
    assert report["headline"]["eavesdrop"]["encryption"] == "needed"
    assert "which protection stops which attack" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"Open {out / 'report.html'} in a browser, or serve it: mitmlab report serve {out}"


def test_check_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = mitmlab("check", "--out", str(blocker / "report"))
    assert unwritable.returncode == 7 and "cannot write the report" in unwritable.stderr
    unknown = mitmlab("check", "--attack", "teleport")
    assert unknown.returncode == 2 and "eavesdrop" in unknown.stderr
    for result in (unwritable, unknown):
        assert "Traceback" not in result.stderr


def test_report_serve_serves_the_html_on_loopback(small_check: Path, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lab", "report", "serve", str(small_check), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"http://127.0.0.1:{port}/report.html" in process.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/report.html", timeout=10) as answer:
            assert answer.status == 200 and b"mitm-lab detection report" in answer.read()
    finally:
        process.terminate()
        process.wait(timeout=10)
    missing = mitmlab("report", "show", str(tmp_path))
    assert missing.returncode == 7 and "no report.json" in missing.stderr


def test_the_attacker_command_with_mitmweb_and_the_control_port(state: StateDir, tmp_path: Path) -> None:
    """`mitmlab attacker` in front of a real server: the client's session goes through it, the attack
    reads the password, and mitmweb's live view shows the flow. (The control port: test_attacker_role.)"""
    web_port = free_port()
    with (
        background(
            "server",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(state.root),
            "--web-ports",
            "0,0",
            "--profile",
            "none",
            port_file=tmp_path / "server-port",
        ) as server_port,
        background(
            "attacker",
            "--attack",
            "eavesdrop",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            f"127.0.0.1:{server_port}",
            "--web-ports",
            "0,0",
            "--web",
            f"127.0.0.1:{web_port}",
            "--state-dir",
            str(state.root),
            port_file=tmp_path / "attacker-port",
        ) as attacker_port,
    ):
        code, out = client(state, attacker_port, "--profile", "none", "balance")
        assert code == 0 and "balance: 1000" in out
        bearer = {"Authorization": f"Bearer {live_view.token(state.secret())}"}
        flows_url = urllib.request.Request(f"http://127.0.0.1:{web_port}/flows", headers=bearer)
        with urllib.request.urlopen(flows_url, timeout=10) as answer:
            flows = json.loads(answer.read())
        assert [f["type"] for f in flows] == ["tcp"]
    password = state.client_password()
    reads = [e for e in evidence_dicts(state, "attacker") if e["event"] == "read"]
    assert password in [e["value"] for e in reads]


def test_the_attacker_command_refuses_an_unknown_attack(state: StateDir) -> None:
    result = mitmlab("attacker", "--attack", "teleport", "--state-dir", str(state.root))
    assert result.returncode == 2 and "eavesdrop" in result.stderr
