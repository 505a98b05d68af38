"""The check's own set-up (lab/system.py): what the views need is installed where it can be, and a run
whose program this machine lacks is `not-run-here`, counted apart, with the line that installs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab import system
from lab.clients.adapters import CLIENTS
from lab.stacks import attacks_on
from lab.stacks.real_tls import REAL_TLS

pytestmark = pytest.mark.system

ATTACK = "self-signed"
HIDDEN = sorted({p for a in CLIENTS.values() for p in a.programs if p not in system.LIBRARIES})
"""Every program a real client runs: hidden from the check's PATH (libraries are found by ldconfig's
cache, and stay found)."""
NEEDING = [name for name, adapter in CLIENTS.items() if adapter.programs]


def hidden_check(
    out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mitmlab check` of the clients view against one attack, with a PATH that holds no program."""
    empty = out.parent / "empty-path"
    empty.mkdir(exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "check",
            "--view",
            "clients",
            "--attack",
            ATTACK,
            "--out",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PATH": str(empty), **(env or {})},
    )


def not_run_here_as_counted(out: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The check exits 0; the runs of every client that needs a hidden program are not run here, in
    the summary, the report and junit, with the install line printed once."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    expected = len(NEEDING) * (1 + len(attacks_on(REAL_TLS, [ATTACK])))
    summary = report["summary"]
    assert summary["not-run-here"] == expected
    assert summary["error"] == 0
    assert summary["not_installed"] == HIDDEN
    line = "apt-get install chromium chromium-headless-shell curl libnss3-tools openssl"
    assert summary["install"] == line
    assert f"{expected} not run here" in result.stdout
    assert result.stdout.count(line) == 1, result.stdout
    for run in (s for s in report["scenarios"] if s["verdict"] == "not-run-here"):
        assert run["evidence"]["capture"] is None
        assert run["evidence"]["capture_note"] == "nothing ran here, so nothing was captured"
    by_client = {c["client"]: c["verdict"] for c in report["clients"] if c["attack"] == ATTACK}
    assert {c for c, v in by_client.items() if v == "not-run-here"} == set(NEEDING)
    assert by_client["python-urllib"] == "blocked"  # the lab's own Python still ran
    assert "not installed here: chromium, certutil" in (out / "report.html").read_text()
    assert f'skipped="{expected}"' in (out / "junit.xml").read_text()
    return report


@pytest.mark.parametrize("turned_off", [("--no-install",), ("MITMLAB_NO_INSTALL", "1")])
def test_clients_hidden_and_installing_off_are_not_run_here_and_exit_0(
    tmp_path: Path, turned_off: tuple[str, ...]
) -> None:
    switch, env = (turned_off, None) if len(turned_off) == 1 else ((), {turned_off[0]: turned_off[1]})
    result = hidden_check(tmp_path / "report", *switch, env=env)
    not_run_here_as_counted(tmp_path / "report", result)
    assert "Installing" not in result.stderr


def test_as_root_with_apt_the_check_installs_what_it_lacks_first(tmp_path: Path) -> None:
    """The first-run set-up as it runs for real: apt-get installs the clients' packages (here already
    installed by ./run-tests, so apt has nothing to change; the programs stay hidden from the check)."""
    if system.why_not_installable() is not None:
        if os.environ.get("MITMLAB_REQUIRE_NAMESPACES"):
            pytest.fail(f"./run-tests runs as root with apt-get, yet: {system.why_not_installable()}")
        pytest.skip(f"cannot install here: {system.why_not_installable()}")
    result = hidden_check(tmp_path / "report")
    [said] = [line for line in result.stderr.splitlines() if line.startswith("Installing")]
    packages = "chromium, chromium-headless-shell, curl, libnss3-tools, openssl"
    assert f"{packages} with apt-get, once: the clients view needs" in said
    log = Path(said.split("apt's output: ")[1].split(";")[0])
    written = log.read_text()
    assert (
        "$ apt-get -oDPkg::Lock::Timeout=300 install -y chromium chromium-headless-shell curl libnss3-tools "
        "openssl" in written
    )
    assert "Not installed" not in result.stderr, result.stderr
    not_run_here_as_counted(tmp_path / "report", result)
    log.unlink()


def test_a_package_apt_cannot_install_is_one_sentence_with_its_log(tmp_path: Path) -> None:
    if system.why_not_installable() is not None:
        pytest.skip(f"cannot install here: {system.why_not_installable()}")
    log = tmp_path / "apt.log"
    with pytest.raises(system.InstallFailed) as failed:
        system.install(packages=["mitmlab-no-such-package"], log=log)
    assert "E: Unable to locate package mitmlab-no-such-package" in str(failed.value)
    assert str(log) in str(failed.value) and failed.value.log == log
    assert "\n" not in str(failed.value)


def test_what_is_missing_is_what_is_not_found() -> None:
    present = "python3" if shutil.which("python3") else Path(sys.executable).name
    assert system.missing([present, "mitmlab-no-such-program", present]) == ("mitmlab-no-such-program",)
    assert system.install_line(["certutil", "chromium", "mitmlab-no-such-program"]) == (
        "apt-get install chromium libnss3-tools"
    )
    assert system.install_line(["mitmlab-no-such-program"]) is None
