"""The files the lab writes and serves, against another local user who can write where they go
(issue 27, item 2): links that user plants are never followed, a folder that is not the user's own is
refused before any run, and the report's secrets are its owner's alone.

The other user is nobody (`setpriv`, where the tests run as root: CI), acting only with coreutils from
a scratch folder under /tmp that everyone can write (sticky, as /tmp is)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import files
from lab.cli.check import _hand_over, default_out
from lab.events import Reply
from lab.evidence import EvidenceLog
from lab.report.writers import FILES, load_report, write_report
from tests.processes import free_port, mitmlab

pytestmark = pytest.mark.loopback

NOBODY = 65534
SECRET = "the-root-only-secret-7f3a"
SMALL = ("--view", "ablation", "--attack", "replay", "--no-capture")
"""A check of a few seconds, were it to run."""


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("another user's actions need root (CI runs as root)")


def as_other(*argv: str) -> None:
    """`argv` (a coreutils command) run as nobody."""
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    subprocess.run([*drop, *argv], check=True, capture_output=True, timeout=30, cwd="/")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder under /tmp that every user can write, sticky (as /tmp is)."""
    need_root()
    with tempfile.TemporaryDirectory(prefix="mitmlab-shared-") as scratch:
        folder = Path(scratch)
        folder.chmod(0o1777)
        yield folder


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A root-owned file that only root can read, which nobody would like to overwrite or read."""
    secret = tmp_path / "root-only" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    return secret


def unchanged(path: Path) -> bool:
    return path.read_text() == SECRET + "\n" and path.stat().st_uid == os.geteuid()


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 7, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "runs in" not in result.stdout  # refused before any run
    (line,) = result.stderr.strip().splitlines()
    return line


# --out and write_report ---------------------------------------------------------------------------------


def test_check_refuses_another_users_folder_and_follows_none_of_its_links(shared: Path, target: Path) -> None:
    theirs = shared / "theirs"
    as_other("mkdir", str(theirs))
    as_other("ln", "-s", str(target), str(theirs / "report.md"))
    as_other("ln", "-s", str(target), str(theirs / ".write-test"))
    started = time.monotonic()
    result = mitmlab("check", *SMALL, "--out", str(theirs))
    assert "belongs to another user" in one_line_refusal(result)
    assert time.monotonic() - started < 20  # a run takes longer: none started
    assert unchanged(target)
    assert sorted(p.name for p in theirs.iterdir()) == [".write-test", "report.md"]


def test_check_refuses_a_folder_of_yours_holding_another_users_link(shared: Path, target: Path) -> None:
    mine = shared / "mine"
    mine.mkdir()
    mine.chmod(0o1777)
    as_other("ln", "-s", str(target), str(mine / "report.md"))
    result = mitmlab("check", *SMALL, "--out", str(mine))
    assert "holds 'report.md', which no report leaves" in one_line_refusal(result)
    assert unchanged(target)
    assert not (mine / "evidence").exists()


def test_write_report_refuses_folders_others_can_write_and_replaces_a_link_in_its_own(
    small_check: Path, shared: Path, target: Path, tmp_path: Path
) -> None:
    report = load_report(small_check)
    theirs = shared / "theirs"
    as_other("mkdir", str(theirs))
    as_other("ln", "-s", str(target), str(theirs / "report.md"))
    with pytest.raises(files.UnsafeFolderError, match="belongs to another user"):
        write_report(report, theirs)
    with pytest.raises(files.UnsafeFolderError, match="others can write"):
        write_report(report, shared)
    assert unchanged(target)

    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    (own / "report.md").symlink_to(target)
    write_report(report, own)
    assert unchanged(target)
    assert (
        not (own / "report.md").is_symlink()
        and "# mitm-lab detection report" in (own / "report.md").read_text()
    )
    assert sorted(p.name for p in own.iterdir()) == sorted(FILES)  # no temporary left behind


def test_a_file_is_never_written_through_a_link(shared: Path, target: Path) -> None:
    """`demo --capture` and every report file: a planted link is replaced, never followed (a user
    other than root is refused by the folder's sticky bit); the file is 0600."""
    as_other("ln", "-s", str(target), str(shared / "capture.pcapng"))
    files.write_private(shared / "capture.pcapng", b"frames")  # root may replace nobody's link
    assert unchanged(target)
    written = shared / "capture.pcapng"
    assert not written.is_symlink() and written.read_bytes() == b"frames" and mode(written) == 0o600


def test_empty_out_is_a_usage_error() -> None:
    result = mitmlab("check", "--out", "")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--out" in errors[0] and "current directory" in errors[0]


def test_out_whose_report_html_is_a_folder_is_refused_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)
    result = mitmlab("check", *SMALL, "--out", str(out))
    assert "holds 'report.html'" in one_line_refusal(result)
    assert [p.name for p in out.iterdir()] == ["report.html"]


def test_a_previous_report_of_yours_is_replaced(
    check_over_a_report: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    previous, _ = check_over_a_report  # small_check's report, then eavesdrop's check into its folder
    runs = {p.name.split("-")[0] for p in (previous / "evidence").iterdir()}
    assert runs == {"eavesdrop"}  # the previous report's runs are gone
    assert json.loads((previous / "report.json").read_text())["attacks"] == ["eavesdrop"]


def test_the_default_out_is_a_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = default_out()
    first.mkdir(parents=True)
    second = default_out()
    assert second != first and not second.exists() and second.parent == first.parent


# Modes ---------------------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_reports_secrets_are_its_owners_alone(small_check: Path) -> None:
    assert mode(small_check) == 0o700
    for name in FILES:
        assert mode(small_check / name) == 0o644
    evidence = list((small_check / "evidence").rglob("*"))
    kinds = {p.name for p in evidence if p.is_file()}
    assert {"client.jsonl", "attacker.jsonl", "server.jsonl", "lab.keylog"} <= kinds
    if os.geteuid() == 0:  # the attacker captured: its raw socket needs root
        assert {"run.pcapng", "sequence.svg"} <= kinds
    assert mode(small_check / "evidence") == 0o700
    for path in evidence:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    for text in ("Secrets in this folder", "share it on purpose"):
        assert text in (small_check / "report.html").read_text()
        assert text in (small_check / "report.md").read_text()


def test_a_roles_evidence_is_0600_in_a_0700_folder_and_never_through_a_link(
    tmp_path: Path, target: Path
) -> None:
    log = EvidenceLog(tmp_path / "state" / "evidence" / "client.jsonl", "client")
    log.record(Reply(op="login", reply={"ok": True}))
    assert mode(log.path) == 0o600 and mode(log.path.parent) == 0o700
    linked = EvidenceLog(tmp_path / "state" / "evidence" / "server.jsonl", "client")
    linked.path.symlink_to(target)
    with pytest.raises(OSError):
        linked.record(Reply(op="login", reply={"ok": True}))
    assert target.read_text() == SECRET + "\n"


@pytest.mark.root
def test_hand_over_changes_owners_keeps_modes_and_follows_no_link(tmp_path: Path, target: Path) -> None:
    need_root()
    reports = tmp_path / "reports"
    reports.mkdir()
    os.chown(reports, NOBODY, NOBODY)
    out = reports / "run"
    (out / "evidence" / "r1").mkdir(parents=True, mode=0o700)
    (out / "evidence").chmod(0o700)
    out.chmod(0o700)
    files.write_shared(out / "report.html", "<p>report</p>")
    files.write_private(out / "evidence" / "r1" / "lab.keylog", "keys")
    (out / "evidence" / "r1" / "planted").symlink_to(target)
    before = {p: mode(p) for p in [out, *out.rglob("*")]}
    _hand_over(out)
    for path, was in before.items():
        assert path.lstat().st_uid == NOBODY and mode(path) == was, path
    assert target.stat().st_uid == 0 and mode(target) == 0o600


# report serve ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(*args: str) -> Iterator[str]:
    """`mitmlab report serve ARGS` on a free port; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lab", "report", "serve", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"http://127.0.0.1:{port}/" in process.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def plant_links(folder: Path, target: Path) -> None:
    """What another user who can write `folder` plants in it: `/`, a root-only file, a folder of root's."""
    folder.chmod(0o1777)
    as_other("ln", "-s", "/", str(folder / "rootfs"))
    as_other("ln", "-s", str(target), str(folder / "shadow.html"))
    as_other("ln", "-s", str(target.parent), str(folder / "linked"))


def test_serve_answers_only_regular_files_of_the_report_never_through_a_link(
    small_check: Path, shared: Path, target: Path
) -> None:
    served = shared / "served"
    shutil.copytree(small_check, served)
    plant_links(served, target)
    html = (served / "report.html").read_bytes()
    run = next(p for p in (served / "evidence").iterdir())
    with serving(str(served)) as base:
        for path in ("/", "/?only=x", "/report.html", "/report.html?only=x"):
            assert fetch(base + path) == (200, html), path
        assert fetch(f"{base}/evidence/{run.name}/client.jsonl") == (200, (run / "client.jsonl").read_bytes())
        for path in (
            "/rootfs/etc/passwd",
            "/rootfs/etc/shadow",
            "/rootfs/",
            "/shadow.html",
            "/linked/secret.txt",
            "/linked/",
            "/evidence/",
            "/evidence",
            f"/evidence/{run.name}/",
            "/../../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            f"/evidence/..%2f..%2f{target.parent.name}/secret.txt",
        ):
            status, body = fetch(base + path)
            assert status == 404 and SECRET.encode() not in body and b"root:" not in body, path
        (served / "report.html").unlink()
        (served / "report.html").symlink_to(target)  # as another user could where report.html was theirs
        for path in ("/", "/?only=x"):
            status, body = fetch(base + path)
            assert status == 404 and SECRET.encode() not in body


def test_serve_newest_never_picks_a_linked_report_nor_follows_a_link_inside(
    small_check: Path, shared: Path, target: Path
) -> None:
    reports = shared / "reports"
    real = reports / "20260101-000000-lab1"
    shutil.copytree(small_check, real)
    plant_links(real, target)
    (target.parent / "report.html").write_text(SECRET)
    (target.parent / "report.json").write_text("{}")
    reports.chmod(0o1777)
    as_other("ln", "-s", str(target.parent), str(reports / "20991231-235959-lab1"))
    with serving("--newest", "--lab", "lab1", str(reports)) as base:
        assert fetch(base + "/?only=x") == (200, (real / "report.html").read_bytes())
        for path in ("/rootfs/etc/shadow", "/shadow.html", "/linked/secret.txt", "/evidence/"):
            status, body = fetch(base + path)
            assert status == 404 and SECRET.encode() not in body, path


def test_report_show_refuses_a_report_json_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("[1]")
    result = mitmlab("report", "show", str(tmp_path))
    assert result.returncode == 7 and "Traceback" not in result.stderr
    assert "is not a mitm-lab report" in result.stderr
