"""The real clients' jobs on their own: what each is told to run, how its words are read, and how a
program that hangs, floods, is missing or cannot start is bounded and reported. Real processes."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from lab.clients.adapters import CLIENTS, Curl, Probe
from lab.clients.browser import Browsers
from lab.clients.job import BALANCE_MARK, Invocation, Navigation, Ran, Target, TrustFiles
from lab.clients.run import OUTPUT_CAP, run_program, visit
from lab.state import StateDir

pytestmark = pytest.mark.loopback


def target(state: StateDir, workdir: Path) -> Target:
    trust = TrustFiles(state.ca_cert, state.attacker_cert("rogue-ca"), state.ca_crl, "sha256//AAAA")
    return Target("127.0.0.1", 9443, 9080, "alice", "s3cret-pw", trust, workdir)


def ran(invocation: Invocation | Navigation, code: int | None, stdout: str = "", stderr: str = "") -> Ran:
    return Ran(invocation, code, stdout, stderr, 1.0)


def test_curl_opens_the_page_then_posts_to_where_its_form_says(state: StateDir, tmp_path: Path) -> None:
    job = Curl("curl", "curl").job(target(state, tmp_path))
    first = next(job)
    assert isinstance(first, Invocation)
    assert first.argv[-1] == "https://bank.lab:9443/"
    assert "--resolve" in first.argv and "bank.lab:9443:127.0.0.1" in first.argv
    assert b"s3cret-pw" in first.files["credentials"]  # in a file, never on the command line
    assert not any("s3cret-pw" in part for part in first.argv)
    page = '<form method="post" action="http://bank.lab:9080/login">'  # what sslstrip makes of it
    second = job.send(ran(first, 0, page))
    assert second.argv[-3:] == ("--data", "@credentials", "http://bank.lab:9080/login")
    with pytest.raises(StopIteration) as done:
        job.send(ran(second, 0, '<p id="balance">alice: 1000</p>'))
    assert done.value.value.completed and done.value.value.protection is None


@pytest.mark.parametrize(
    ("stderr", "protection"),
    [
        ("curl: (60) SSL certificate problem: self-signed certificate", "ca_trust"),
        ("curl: (60) SSL certificate problem: unable to get local issuer certificate", "ca_trust"),
        (
            "curl: (60) SSL: no alternative certificate subject name matches target host name 'bank.lab'",
            "hostname",
        ),
        ("curl: (60) SSL certificate problem: certificate has expired", "validity"),
        ("curl: (60) SSL certificate problem: certificate revoked", "revocation"),
        ("curl: (90) SSL: public key does not match pinned public key", "pinning"),
        ("curl: (7) Failed to connect to bank.lab port 9443: Connection refused", None),
    ],
)
def test_curl_words_are_read_as_the_protection_they_name(
    state: StateDir, tmp_path: Path, stderr: str, protection: str | None
) -> None:
    job = Curl("curl", "curl").job(target(state, tmp_path))
    first = next(job)
    with pytest.raises(StopIteration) as done:
        job.send(ran(first, 60, stderr=f"noise\n{stderr}\nMore details here"))
    reading = done.value.value
    assert not reading.completed and reading.protection == protection
    assert stderr in reading.words


def test_chromium_is_a_navigation_whose_failure_is_in_its_words(state: StateDir, tmp_path: Path) -> None:
    job = CLIENTS["chromium"].job(target(state, tmp_path))
    navigation = next(job)
    assert isinstance(navigation, Navigation)
    assert navigation.resolver_rules == "--host-resolver-rules=MAP bank.lab 127.0.0.1, MAP * ~NOTFOUND"
    assert navigation.url.startswith("http://bank.lab:9080/#user=alice&password=")
    assert navigation.trusted == (state.ca_cert,) and navigation.hsts_known == ()
    assert navigation.program == "chromium-headless-shell"
    line = "net::ERR_CERT_DATE_INVALID at https://bank.lab:9443/"
    with pytest.raises(StopIteration) as done:
        job.send(ran(navigation, 0, stdout="<html>chrome-error</html>", stderr=line))
    assert done.value.value.protection == "validity" and done.value.value.words == line


def test_careless_chromium_trusts_the_rogue_ca_and_hsts_chromium_knows_bank_lab(
    state: StateDir, tmp_path: Path
) -> None:
    careless = next(CLIENTS["chromium-careless"].job(target(state, tmp_path)))
    assert isinstance(careless, Navigation)
    assert careless.trusted == (state.ca_cert, state.attacker_cert("rogue-ca"))
    known = next(CLIENTS["chromium-hsts"].job(target(state, tmp_path)))
    assert isinstance(known, Navigation) and known.hsts_known == ("bank.lab",)
    assert known.program == "chromium"  # the net-internals page that teaches it is the whole browser's


@pytest.mark.parametrize(
    ("responses", "protection"),
    [
        (
            "307 Internal Redirect http://bank.lab:9080/ to https://bank.lab:9080/, "
            "Non-Authoritative-Reason: HSTS",
            "hsts",
        ),
        (
            "307 Internal Redirect http://other.lab/ to https://other.lab/, Non-Authoritative-Reason: HSTS",
            None,
        ),
        ("302 Found http://bank.lab:9080/ to https://bank.lab:9443/", None),
    ],
)
def test_chromium_is_credited_with_hsts_only_for_its_own_redirect_to_bank_lab(
    state: StateDir, tmp_path: Path, responses: str, protection: str | None
) -> None:
    job = CLIENTS["chromium-hsts"].job(target(state, tmp_path))
    navigation = next(job)
    page = f"<p {BALANCE_MARK}>alice: 1000</p>"
    with pytest.raises(StopIteration) as done:
        job.send(Ran(navigation, 0, page, "", 1.0, {"responses": f"200 OK http://x/\n{responses}"}))
    assert done.value.value.completed and done.value.value.protection == protection


def test_a_client_that_hangs_is_killed_with_its_children_in_bounded_time(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('waiting', flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    done = asyncio.run(run_program(Invocation((sys.executable, "-c", script)), tmp_path, timeout=1.0))
    assert time.monotonic() - started < 10
    assert done.timed_out and done.exit_code is None and "waiting" in done.stdout


def test_a_client_that_floods_is_capped(tmp_path: Path) -> None:
    flood = f"import sys; sys.stdout.write('x' * {OUTPUT_CAP * 3})"
    done = asyncio.run(run_program(Invocation((sys.executable, "-c", flood)), tmp_path, timeout=30))
    assert done.exit_code == 0 and len(done.stdout) == OUTPUT_CAP


def test_a_program_that_cannot_start_is_a_reading_not_a_crash(tmp_path: Path) -> None:
    done = asyncio.run(run_program(Invocation((str(tmp_path / "nothing-here"),)), tmp_path, timeout=5))
    assert done.exit_code == 127 and "could not start" in done.stderr


def test_a_client_missing_from_the_machine_says_so(state: StateDir, tmp_path: Path) -> None:
    missing = Probe(("no-such-browser-here", "{url}"))
    done = asyncio.run(visit(missing, target(state, tmp_path), Browsers()))
    assert done.missing == ("no-such-browser-here",) and done.ran == ()
    assert done.reading.words == "not installed: no-such-browser-here"


def test_probe_fills_in_where_bank_lab_is(state: StateDir, tmp_path: Path) -> None:
    job = Probe(("client", "{url}", "--ca={cafile}", "{resolve}", "{address}")).job(target(state, tmp_path))
    invocation = next(job)
    assert isinstance(invocation, Invocation)
    assert invocation.argv == (
        "client",
        "https://bank.lab:9443/",
        f"--ca={state.ca_cert}",
        "bank.lab:9443:127.0.0.1",
        "127.0.0.1",
    )
    assert invocation.env["MITMLAB_PASSWORD"] == "s3cret-pw"
