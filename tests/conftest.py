"""Shared fixtures: a lab state directory (made once per test run, copied per test), and the local checks
that several modules read (each made once per test run: a check takes seconds to minutes)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.state import StateDir
from tests.processes import mitmlab

CHANNEL_VIEWS = ("--view", "ladder", "--view", "ablation", "--view", "defence-sets")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The compose tests last: ./run-tests builds their base images meanwhile (test_compose waits)."""
    items.sort(key=lambda item: item.path.name == "test_compose.py")


@pytest.fixture(scope="session")
def state_template(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """Certificates take a while to make: make them once and copy the directory for each test."""
    state = StateDir(tmp_path_factory.mktemp("state-template"))
    state.create(datetime.datetime.now(datetime.UTC))
    return state


@pytest.fixture
def state(state_template: StateDir, tmp_path: Path) -> StateDir:
    copy = StateDir(tmp_path / "state")
    shutil.copytree(state_template.root, copy.root)
    return copy


def local_check(out: Path, *args: str, exit_code: int | None = 0) -> dict[str, Any]:
    """`mitmlab check ARGS` into `out`, its report; `exit_code` None: whatever it exits with."""
    result = mitmlab("check", *args, "--out", str(out), timeout=900)
    assert "Traceback" not in result.stderr
    assert exit_code is None or result.returncode == exit_code, result.stdout + result.stderr
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


@pytest.fixture(scope="session")
def channel_check(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The lab channel's views, checked locally (test_check reads it; test_compose compares the
    containers' check with it)."""
    out = tmp_path_factory.mktemp("channel-check")
    return out, local_check(out, *CHANNEL_VIEWS)


@pytest.fixture(scope="session")
def clients_check(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The clients view, checked locally (test_clients reads it; test_compose compares with it)."""
    out = tmp_path_factory.mktemp("clients-check")
    # A client missing here is `not-run-here`, exit 0 (test_setup); test_clients fails without them.
    return out, local_check(out, "--view", "clients", "--jobs", "3")


@pytest.fixture(scope="session")
def ssh_check(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The ssh view, checked locally as root, every run captured (test_ssh_view reads its table,
    test_ssh_capture its captures and diagrams)."""
    need_root()
    out = tmp_path_factory.mktemp("ssh-check")
    return out, local_check(out, "--view", "ssh")


@pytest.fixture(scope="session")
def small_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real check, small: the ablation of replay, captured where the attacker can (as root). Its
    report folder, which test_report_files and test_cli read (a check takes seconds: made once)."""
    out = tmp_path_factory.mktemp("small-check") / "report"
    result = mitmlab("check", "--view", "ablation", "--attack", "replay", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="session")
def check_over_a_report(
    small_check: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`mitmlab check --view ablation --attack eavesdrop`, one job, into a copy of `small_check`'s
    folder: the report folder and the process (test_cli reads what it printed and wrote,
    test_report_files that the previous report's runs are gone)."""
    out = tmp_path_factory.mktemp("check-over-a-report") / "report"
    shutil.copytree(small_check, out)
    args = ("--view", "ablation", "--attack", "eavesdrop", "--no-capture", "--jobs", "1")
    result = mitmlab("check", *args, "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def need_root() -> None:
    """Network namespaces and raw sockets need root: CI runs as root, and ./run-tests then requires
    these tests."""
    if os.geteuid() != 0:
        if os.environ.get("MITMLAB_REQUIRE_NAMESPACES"):
            pytest.fail("this test needs root (network namespaces, raw sockets)")
        pytest.skip("root only: network namespaces, raw sockets")


def need_tshark() -> None:
    """Debian's tshark, which ./run-tests installs as root (and then requires)."""
    if shutil.which("tshark") is None:
        if os.environ.get("MITMLAB_REQUIRE_NAMESPACES"):
            pytest.fail("tshark is not installed (./run-tests installs Debian's tshark as root)")
        pytest.skip("no tshark here")


@pytest.fixture
def open_scratch() -> Iterator[Path]:
    """A folder under /tmp that every user may enter (0755), unlike pytest's tmp_path (root's alone):
    for what another user must reach, or what only its own modes keep from others."""
    scratch = Path(tempfile.mkdtemp(prefix="mitmlab-open-"))
    scratch.chmod(0o755)
    yield scratch
    shutil.rmtree(scratch)
