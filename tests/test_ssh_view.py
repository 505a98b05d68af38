"""The SSH stack as the checker runs it (`mitmlab check --view ssh`, docs/ssh.md): the real ssh in every
configuration through the attacker role's SSH part to the server role's real sshd, each cell OpenSSH's
own verdict, in the report's four formats and the terminal."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from lab.clients.ssh import SSH_CLIENTS
from lab.stacks import attacks_on
from lab.stacks.ssh import SSH
from tests.conftest import need_root
from tests.processes import mitmlab, without_privilege

pytestmark = [pytest.mark.system, pytest.mark.root]


@pytest.fixture(scope="module")
def checked(ssh_check: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    return ssh_check


def cells(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["client"], c["attack"]): c for c in report["sections"]["ssh"]["cells"]}


def run_of(report: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in report["scenarios"] if s["id"] == cell["run"])


def test_every_configuration_meets_every_ssh_attack_with_openssh_s_verdict(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    _, report = checked
    table = {key: (c["verdict"], c["protection"]) for key, c in cells(report).items()}
    assert report["summary"]["runs"] == len(SSH_CLIENTS) * (1 + len(attacks_on(SSH)))
    assert all(table[(client, "none")] == ("unaffected", None) for client in SSH_CLIENTS)  # the baselines
    assert all(table[(client, "eavesdrop")] == ("blocked", "encryption") for client in SSH_CLIENTS)
    for attack in ("host-key-swap", "rogue-host-ca"):
        assert table[("tofu", attack)] == ("compromised", None)  # first contact: the seed's weakness
        assert table[("known-key", attack)] == ("blocked", "pinning")
        assert table[("known-key-no", attack)] == ("blocked", "pinning")
        assert table[("host-ca", attack)] == ("blocked", "ca_trust")
        assert table[("host-ca-accept-new", attack)] == ("compromised", None)  # a CA line alone
        assert table[("pubkey", attack)] == ("blocked", "client_auth")
        assert table[("pubkey-agent", attack)] == ("compromised", None)
        assert table[("git", attack)] == ("blocked", "client_auth")


def test_what_each_verdict_rests_on_is_openssh_s_and_sshd_s_own_account(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    _, report = checked
    table = cells(report)
    first_contact = run_of(report, table[("tofu", "host-key-swap")])
    assert {b["kind"] for b in first_contact["broken"]} == {"password_read", "command_run_by_the_attacker"}
    assert "Permanently added 'server.lab'" in first_contact["message"]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in table[("known-key", "host-key-swap")]["words"]
    known_no = run_of(report, table[("known-key-no", "host-key-swap")])
    assert "Password authentication is disabled to avoid man-in-the-middle attacks" in known_no["message"]
    assert "strict checking" in table[("host-ca", "rogue-host-ca")]["words"]
    read_not_run = run_of(report, table[("pubkey", "host-key-swap")])
    assert "read the command `echo transfer 100 to bob`" in read_not_run["message"]
    assert "nothing ran" in read_not_run["message"]
    said = [line["text"] for line in read_not_run["evidence"]["timeline"]]
    assert any(text.startswith("sshd refuses alice's login by publickey") for text in said)
    assert not any(text.startswith("RUNS") for text in said)  # the command never ran on the server
    agent = run_of(report, table[("pubkey-agent", "host-key-swap")])
    assert [b["kind"] for b in agent["broken"]] == ["command_run_by_the_attacker"]
    assert "by agent" in agent["broken"][0]["detail"]
    for key in (("known-key", "host-key-swap"), ("host-ca", "host-key-swap")):  # refused before a password
        assert not [
            text for text in run_of(report, table[key])["evidence"]["timeline"] if "READS" in text["text"]
        ]


def test_the_ssh_table_is_in_every_report_format_and_the_terminal(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    out, report = checked
    assert report["views"] == ["ssh"] and report["headline"] == {}
    assert "## ssh: OpenSSH clients against an SSH man in the middle" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert 'id="ssh-table"' in html and "REMOTE HOST IDENTIFICATION HAS CHANGED" in html
    junit = (out / "junit.xml").read_text()
    assert junit.count("<testcase") == report["summary"]["runs"]
    shown = json.loads((out / "report.json").read_text())
    assert shown["sections"]["ssh"]["columns"][0]["id"] == "tofu"
    terminal = mitmlab("report", "show", str(out), timeout=60)
    assert terminal.returncode == 0, terminal.stderr
    assert "ssh (✗ compromised" in terminal.stdout
    tofu, known = (
        next(line for line in terminal.stdout.splitlines() if f" {c} " in line) for c in ("tofu", "known-key")
    )
    assert "✗" in tofu and "✓ pin" in known


def test_demo_narrates_ssh_s_first_contact_and_a_known_key() -> None:
    need_root()
    first = mitmlab("demo", "host-key-swap", "--client", "tofu", timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "READS the password" in first.stdout and "RUNS `echo transfer 100 to bob` as alice" in first.stdout
    assert "COMPROMISED" in first.stdout
    known = mitmlab("demo", "rogue-host-ca", "--client", "known-key", timeout=120)
    assert known.returncode == 0, known.stdout + known.stderr
    assert "BLOCKED by pinning at host_key (client)" in known.stdout
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in known.stdout and "READS" not in known.stdout


def test_demo_of_an_ssh_attack_without_a_client_says_how() -> None:
    result = mitmlab("demo", "host-key-swap", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "host-key-swap is an attack on ssh: name a client of it with --client" in result.stderr
    wrong = mitmlab("demo", "bit-flip", "--client", "tofu", timeout=60)
    assert wrong.returncode == 2 and "bit-flip does not apply to tofu's stack (ssh)" in wrong.stderr


def test_without_root_every_ssh_run_is_not_run_here_and_says_why() -> None:
    """As nobody (where the tests run as root): the server role's sshd cannot start, every other part
    of the lab can; the check completes, its SSH runs counted apart, each with the reason."""
    need_root()
    with tempfile.TemporaryDirectory() as scratch:
        check = ("check", "--view", "ssh", "--attack", "host-key-swap", "--no-install", "--out", "report")
        done = without_privilege("-m", "lab", *check, cwd=Path(scratch), user="nobody")
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
        report = json.loads((Path(scratch) / "report" / "report.json").read_text())
        runs = report["scenarios"]
        assert report["summary"]["not-run-here"] == len(runs) == 2 * len(SSH_CLIENTS)
        assert all("the server's sshd cannot start here" in run["message"] for run in runs)
        assert all("root" in run["message"] for run in runs)
        assert "runs not run here: this machine does not allow them" in done.stdout
