"""`mitmlab bench`: speed measured as ratios against a reference in the same run."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lab.bench import crypto
from lab.bench.channel import Bench
from lab.bench.measure import Result, ratios
from lab.bench.proxy import ProxyBench
from lab.checker.views import View, views_here, views_on
from lab.cli.errors import EXIT_CONNECTION, EXIT_SETUP, fail
from lab.cli.options import attack_option, file_to_write
from lab.clients.adapters import CLIENTS, Chromium
from lab.containers import ComposeLab, ContainersError
from lab.net import free_port
from lab.stacks import attacks_on
from lab.stacks.scenario import LAB_CHANNEL
from lab.state import StateDir

console = Console(highlight=False)


@click.group()
def bench() -> None:
    """Benchmarks; results and their interpretation are in docs/benchmarks.md."""


def _report(title: str, results: list[Result], json_path: Path | None) -> None:
    table = Table(title=title)
    for column in ("measurement", "value", "ratio to reference"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for result, ratio in ratios(results):
        reference = f"{ratio:.2f} x {result.reference}" if ratio is not None else ""
        value = f"{result.value:,.0f}" if float(result.value).is_integer() else f"{result.value:,.1f}"
        table.add_row(result.name, f"{value} {result.unit}".strip(), reference)
    console.print(table)
    if json_path is not None:
        rows = [
            {"name": r.name, "value": r.value, "unit": r.unit, "reference": r.reference, "ratio": q}
            for r, q in ratios(results)
        ]
        _write_json(json_path, rows)


def _write_json(path: Path, results: list[dict[str, Any]]) -> None:
    try:
        path.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:  # --json was checked before the work; this is what changed since
        fail(EXIT_SETUP, f"measured, but cannot write {path}: {exc.strerror or exc}")


json_option = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=file_to_write,
    help="Also write the results as JSON here.",
)


@bench.command()
@click.option(
    "--handshakes",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Handshakes per measurement.",
)
@click.option(
    "--megabytes",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes sent per throughput measurement, in MiB.",
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Interleaved rounds of measurement; each row reports its median.",
)
@json_option
def channel(handshakes: int, megabytes: int, repeats: int, json_path: Path | None) -> None:
    """Lab channel vs Python's TLS 1.3 over loopback: handshakes/s and record throughput."""
    _measure(
        lambda state: Bench(state, handshakes, megabytes, repeats),
        "lab channel vs Python's TLS (goal: throughput >= 0.5x, handshakes >= 0.25x)",
        json_path,
    )


@bench.command()
@click.option(
    "--sessions",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions each way (direct, through the attacker).",
)
@click.option(
    "--megabytes",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes per throughput measurement, in MiB.",
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Interleaved rounds of throughput measurement; each row reports its median.",
)
@json_option
def proxy(sessions: int, megabytes: int, repeats: int, json_path: Path | None) -> None:
    """The attacker's cost: session latency and throughput through mitmproxy vs direct."""
    _measure(
        lambda state: ProxyBench(state, sessions, megabytes, repeats),
        "the attacker in the middle vs direct (goal: adds under 5 ms to a session)",
        json_path,
    )


class _Measurement(Protocol):
    @property
    def steps(self) -> int: ...

    def run(self, tick: Callable[[], None]) -> Coroutine[Any, Any, list[Result]]: ...


def _measure(make: Callable[[StateDir], _Measurement], title: str, json_path: Path | None) -> None:
    """Run a benchmark on a fresh state directory, with a progress bar, and report it."""
    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        bench_run = make(StateDir(Path(scratch)).ensure())
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("measuring", total=bench_run.steps)
            results = asyncio.run(bench_run.run(lambda: progress.advance(task)))
    _report(title, results, json_path)


CHANNEL_VIEWS: Final = views_on(LAB_CHANNEL)
CHANNEL_ATTACKS: Final = attacks_on(LAB_CHANNEL)
EXHAUSTIVE_ATTACKS: Final = ("self-signed",)
"""The attack the bench runs every subset for (2048 runs), against the defence-sets search, unless
--attack chooses others."""


@bench.command(name="check")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["local", "compose"]),
    default="local",
    show_default=True,
    help="compose: also the same check in the compose lab's containers, between two local runs.",
)
@attack_option(CHANNEL_ATTACKS, "every attack on the lab channel")
@json_option
def check_command(jobs: int, backend: str, attacks: tuple[str, ...], json_path: Path | None) -> None:
    """The lab channel's `mitmlab check` (its views: ladder, ablation, defence-sets), timed: runs per
    second, the time of each view alone, and the defence-sets search against every subset for
    self-signed (goals: the whole check within 15 s, at least 40 runs per second). --attack narrows
    all of it to the attacks chosen, the search against every subset included.

    With --backend compose: the local check, the check in containers, the local check again; the
    containers' check against the local runs (goal: within 1.5x), the cached image build, `docker
    compose up` to the first verdict and to the report, and the image's size."""
    chosen = attacks or None
    first = _local_check(jobs, CHANNEL_VIEWS, chosen)
    if backend == "local":
        alone = {name: _local_check(jobs, (name,), chosen) for name in CHANNEL_VIEWS}
        exhaustive = attacks or EXHAUSTIVE_ATTACKS
        searched = _local_check(jobs, ("defence-sets",), exhaustive)
        every = _local_check(jobs, ("defence-sets",), exhaustive, {"exhaustive": True})
        which = " and ".join(exhaustive)
        _report(
            f"mitmlab check, the lab channel's views, {jobs} lanes (goals: within 15 s, 40 runs per second)",
            [
                Result("runs", first.runs, ""),
                Result("the check, as its report times it", first.check, "s"),
                Result("wall time, set-up included", first.wall, "s"),
                Result("runs per second (the check)", first.runs / first.check, "/s"),
                Result("the lanes' start-up (every role ready)", first.check - first.scenarios, "s"),
                Result("runs per second, the lanes' start-up apart", first.runs / first.scenarios, "/s"),
                Result("runs in error", first.errors, ""),
                *(
                    Result(f"--view {name} alone ({timed.runs} runs)", timed.check, "s")
                    for name, timed in alone.items()
                ),
                Result(f"defence-sets search, {which}: runs", searched.runs, ""),
                Result(f"defence-sets search, {which}", searched.check, "s"),
                Result(f"every subset (--exhaustive), {which}: runs", every.runs, ""),
                Result(
                    f"every subset (--exhaustive), {which}",
                    every.check,
                    "s",
                    f"defence-sets search, {which}",
                ),
                Result(
                    "runs in error, all checks", sum(t.errors for t in (searched, every, *alone.values())), ""
                ),
            ],
            json_path,
        )
        return
    try:
        containers = _compose_check(jobs, attacks)
    except ContainersError as exc:
        fail(EXIT_SETUP, str(exc))
    second = _local_check(jobs, CHANNEL_VIEWS, chosen)
    local = statistics.median([first.check, second.check])
    _report(
        f"mitmlab check, the lab channel's views, {jobs} lanes: containers against local (goal: within 1.5x)",
        [
            Result("local check (median of the runs before and after)", local, "s"),
            Result(
                "compose check, in the containers",
                containers.check,
                "s",
                "local check (median of the runs before and after)",
            ),
            Result("runs, local", first.runs, ""),
            Result("runs, compose", containers.runs, ""),
            Result("runs in error, all three checks", first.errors + second.errors + containers.errors, ""),
            Result("cached image build (docker compose build)", containers.build, "s"),
            Result("docker compose up to the first verdict", containers.first_verdict, "s"),
            Result("docker compose up to the report", containers.report, "s"),
            Result("image size", containers.image_mb, "MB"),
        ],
        json_path,
    )


@bench.command(name="capture")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1, max=5), default=2, show_default=True)
@attack_option(CHANNEL_ATTACKS, "every attack on the lab channel")
@json_option
def capture_command(jobs: int, rounds: int, attacks: tuple[str, ...], json_path: Path | None) -> None:
    """The lab channel's `mitmlab check` with every run captured and its sequence diagram drawn,
    against the same check with --no-capture, `--rounds` times each, alternately (goal: capturing
    adds less than 20%). Needs root, as capturing does."""
    from lab.capture import capture_refused

    refused = capture_refused()
    if refused:
        fail(EXIT_SETUP, f"nothing to measure: {refused}")
    chosen = attacks or None
    timed: dict[bool, list[_Timed]] = {True: [], False: []}
    for _ in range(rounds):
        for capture in (False, True):
            timed[capture].append(_local_check(jobs, CHANNEL_VIEWS, chosen, capture=capture))
    captured, bare = timed[True], timed[False]
    reference = "the check, --no-capture (median)"
    _report(
        f"mitmlab check, the lab channel's views, {jobs} lanes: captured against not (goal: within 1.2x)",
        [
            Result(reference, statistics.median(t.check for t in bare), "s"),
            Result(
                "the check, captured and drawn (median)",
                statistics.median(t.check for t in captured),
                "s",
                reference,
            ),
            Result("runs", captured[0].runs, ""),
            Result("runs captured and drawn", captured[0].captured, ""),
            Result("capture and diagram per run", captured[0].wire_kb / max(captured[0].runs, 1), "KiB"),
            Result("runs in error, all checks", sum(t.errors for t in (*captured, *bare)), ""),
        ],
        json_path,
    )


@bench.command(name="clients")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.option(
    "--handshakes",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="TLS handshakes per measurement (direct, relayed, intercepted).",
)
@click.option(
    "--client",
    "clients",
    type=click.Choice(list(CLIENTS)),
    multiple=True,
    help="Only this client's column (repeatable). Default: every client.",
)
@click.option(
    "--against-check/--no-against-check",
    default=True,
    show_default=True,
    help="Also time `mitmlab check --view all` against the lab channel's views alone: what the clients "
    "view adds to the check.",
)
@json_option
def clients_command(
    jobs: int, handshakes: int, clients: tuple[str, ...], against_check: bool, json_path: Path | None
) -> None:
    """The real-TLS side, timed: a TLS handshake through mitmproxy against going direct, and the clients
    view's cells per second (the roles' start-up left out), Chromium apart (goal: the clients view adds
    under 15 s to `mitmlab check`). Each cell is run twice, in the clients view alone and in the whole
    check: the bench counts the cells whose verdict differs between the two."""
    from lab.bench.handshakes import HandshakeBench
    from lab.checker.views.clients import Clients

    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        bench_run = HandshakeBench(StateDir(Path(scratch)).ensure(), handshakes)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("handshakes", total=bench_run.steps)
            results = asyncio.run(bench_run.run(lambda: progress.advance(task)))
    chosen = clients or tuple(CLIENTS)
    alone: dict[str, tuple[str, str | None]] = {}
    for label, victims in (
        ("Chromium", [c for c in chosen if isinstance(CLIENTS[c], Chromium)]),
        ("the other clients", [c for c in chosen if not isinstance(CLIENTS[c], Chromium)]),
    ):
        if not victims:
            continue
        view = Clients(victims)
        timed = _local_check(jobs, ("clients",), custom={"clients": view})
        alone.update(timed.verdicts)
        results += [
            Result(f"clients view, {label}: cells", timed.runs, ""),
            Result(
                f"clients view, {label}: cells per second (start-up apart)",
                timed.runs / timed.scenarios,
                "/s",
            ),
            Result(f"clients view, {label}: runs in error", timed.errors, ""),
        ]
    if against_check:
        channel = _local_check(jobs, CHANNEL_VIEWS)
        everything = _local_check(jobs)
        results += [
            Result("mitmlab check, the lab channel's views", channel.check, "s"),
            Result(
                "mitmlab check --view all (with clients)",
                everything.check,
                "s",
                "mitmlab check, the lab channel's views",
            ),
            Result("what the clients view adds to the check", everything.check - channel.check, "s"),
            Result("runs in error, both checks", channel.errors + everything.errors, ""),
            Result(
                "clients view cells whose verdict differs in the whole check",
                sum(everything.verdicts.get(run) != verdict for run, verdict in alone.items()),
                "",
            ),
        ]
    title = f"real TLS, {jobs} lanes (goal: the clients view adds under 15 s to the check)"
    _report(title, results, json_path)


SSH_CHECK_VIEWS: Final = ("ladder", "ablation", "defence-sets", "clients")
"""The check the ssh view is added to: every view that runs on loopback as root but positioning's."""


@bench.command(name="ssh")
@click.option(
    "--sessions",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sessions per path (direct, through the attacker) and key exchange (OpenSSH's default, "
    "curve25519-sha256 forced), interleaved.",
)
@click.option(
    "--view-check/--no-view-check",
    default=True,
    show_default=True,
    help="Also time `mitmlab check --view ssh --no-capture`: the ssh view's runs alone.",
)
@click.option(
    "--against-check/--no-against-check",
    default=True,
    show_default=True,
    help=f"Also time `mitmlab check` with the views {', '.join(SSH_CHECK_VIEWS)}, without and then with "
    "--view ssh: what the ssh view adds to the check.",
)
@click.option(
    "--check-rounds",
    default=2,
    show_default=True,
    type=click.IntRange(min=1, max=5),
    help="With --against-check: rounds of the two checks, in turns (without first, then with first, ...); "
    "each row reports its median.",
)
@json_option
def ssh_command(
    sessions: int, view_check: bool, against_check: bool, check_rounds: int, json_path: Path | None
) -> None:
    """The SSH stack, timed: a session of the real `ssh` (first contact, password) against the real sshd
    directly and through the attacker's SSH relay (host-key-swap), alternately, median and p90 of each;
    with OpenSSH's default key exchange (which flatters the relay: it offers no sntrup761, so ssh falls
    back to curve25519-sha256 with it) and with curve25519-sha256 forced. Then what the ssh view costs
    the check (goal: it adds under 10 s). Needs root, as the lab's sshd does (exit 7 otherwise)."""
    from lab import system
    from lab.bench.ssh import CheckTimed, SshBenchError, SshSessionBench, timed_check
    from lab.clients.ssh import SshSetupError
    from lab.mitm.ssh import SshPartError
    from lab.ssh.sshd import SshdError

    if os.geteuid() != 0:
        fail(
            EXIT_SETUP,
            "bench ssh needs root: the lab's sshd reads /etc/shadow for password login and keeps its "
            "customer off this machine in a private mount namespace (run it with sudo)",
        )
    missing = system.missing(("sshd", "ssh"))
    if missing:
        fail(EXIT_SETUP, f"not installed: {', '.join(missing)} ({system.install_line(missing)})")
    try:
        with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
            state = StateDir(Path(scratch) / "state").ensure()
            bench_run = SshSessionBench(state, Path(scratch) / "sshd", sessions)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("ssh sessions", total=bench_run.steps)
                results = asyncio.run(bench_run.run(lambda: progress.advance(task)))
        if view_check:
            with console.status("mitmlab check --view ssh --no-capture ..."):
                alone = timed_check(("ssh",), capture=False)
            results += [
                Result("mitmlab check --view ssh --no-capture: runs", alone.runs, ""),
                Result("mitmlab check --view ssh --no-capture", alone.duration_s, "s"),
                Result("mitmlab check --view ssh: runs in error", alone.errors, ""),
                Result("mitmlab check --view ssh: runs not run here", alone.not_run, ""),
            ]
        if against_check:
            without, with_ssh = "mitmlab check, without the ssh view", "mitmlab check, with the ssh view"
            timed: dict[bool, list[CheckTimed]] = {False: [], True: []}
            for number in range(check_rounds):
                for ssh in (False, True) if number % 2 == 0 else (True, False):
                    with console.status(f"{with_ssh if ssh else without} (round {number + 1}) ..."):
                        views = (*SSH_CHECK_VIEWS, "ssh") if ssh else SSH_CHECK_VIEWS
                        timed[ssh].append(timed_check(views, capture=True))
            before, after = timed[False], timed[True]
            results += [
                Result(f"{without}: runs", before[0].runs, ""),
                Result(f"{without} (median)", statistics.median(t.duration_s for t in before), "s"),
                Result(f"{with_ssh}: runs", after[0].runs, ""),
                Result(
                    f"{with_ssh} (median)",
                    statistics.median(t.duration_s for t in after),
                    "s",
                    f"{without} (median)",
                ),
                Result(
                    "what the ssh view adds to the check (median of the rounds' differences)",
                    statistics.median(
                        a.duration_s - b.duration_s for a, b in zip(after, before, strict=True)
                    ),
                    "s",
                ),
                Result("runs in error, all checks", sum(t.errors for t in (*before, *after)), ""),
            ]
    except (SshdError, SshPartError, SshSetupError) as exc:
        fail(EXIT_SETUP, str(exc))
    except SshBenchError as exc:
        fail(EXIT_CONNECTION, str(exc))
    for note in bench_run.notes:
        console.print(note)
    _report(
        "the real ssh, direct against through the attacker's SSH relay (host-key-swap); "
        "the ssh view in the check (goal: adds under 10 s)",
        results,
        json_path,
    )


@bench.command(name="labs")
@click.option(
    "--labs",
    "count",
    type=click.IntRange(min=1, max=32),
    default=4,
    show_default=True,
    help="Compose labs (projects) up at once, each running the full check.",
)
@attack_option(CHANNEL_ATTACKS, "every attack on the lab channel")
@json_option
def labs_command(count: int, attacks: tuple[str, ...], json_path: Path | None) -> None:
    """Many compose labs on one host, as a class on one server: COUNT labs run the lab channel's check
    at once. Reported: how many completed without errors, and their check times against one lab alone."""
    try:
        alone = _compose_check(2, attacks).check
        with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
            labs = [
                ComposeLab(
                    project=f"mitmlab-bench-{number}",
                    settings={
                        "MITMLAB_CHECK_ARGS": _channel_check_args(attacks),
                        "MITMLAB_REPORTS": str(Path(scratch) / str(number)),
                        "MITMLAB_REPORT_PORT": str(free_port()),
                        "MITMLAB_LIVE_PORT": str(free_port()),
                    },
                )
                for number in range(1, count + 1)
            ]
            failed: list[str] = []
            try:
                with console.status(f"{count} labs, each running the lab channel's check ..."):
                    started = time.perf_counter()
                    for lab in labs:
                        Path(lab.settings["MITMLAB_REPORTS"]).mkdir()
                        try:
                            lab.up()
                        except ContainersError as exc:  # e.g. roles not healthy in time under the load
                            failed.append(f"{lab.project}: {exc}")
                    codes = []
                    for lab in labs:
                        try:
                            codes.append(lab.wait("checker", timeout=3600))
                        except ContainersError as exc:
                            failed.append(f"{lab.project}: {exc}")
                    wall = time.perf_counter() - started
            finally:
                for lab in labs:
                    lab.down()
            summaries = [
                json.loads(report.read_text())["summary"] for report in Path(scratch).glob("*/*/report.json")
            ]
    except ContainersError as exc:
        fail(EXIT_SETUP, str(exc))
    slowest = max((s["duration_s"] for s in summaries), default=0.0)
    for why in failed[:5]:
        console.print(f"[yellow]{why}[/]")
    _report(
        f"{count} compose labs at once, each the lab channel's check"
        + (f" ({', '.join(attacks)})" if attacks else ""),
        [
            Result("one lab alone: the check", alone, "s"),
            Result("labs whose check completed (exit 0)", codes.count(0), ""),
            Result("labs that did not start or finish", len(failed), ""),
            Result("reports written", len(summaries), ""),
            Result("runs in error, all labs", sum(s["error"] for s in summaries), ""),
            Result("slowest lab's check", slowest, "s", "one lab alone: the check"),
            Result("all labs, up to the last report", wall, "s"),
        ],
        json_path,
    )


@dataclass(frozen=True)
class _Timed:
    check: float
    """The check itself, as its report times it."""
    wall: float = 0.0
    scenarios: float = 0.0
    """The scenarios alone, the roles' start-up left out."""
    runs: int = 0
    errors: int = 0
    build: float = 0.0
    first_verdict: float = 0.0
    report: float = 0.0
    image_mb: float = 0.0
    captured: int = 0
    """Runs with a capture and its diagram."""
    wire_kb: float = 0.0
    """The captures and the diagrams, in KiB."""
    verdicts: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    """Each run's verdict and what blocked it, by run id (a run's id is its scenario's, the same in
    every check)."""


def _local_check(
    jobs: int,
    views: tuple[str, ...] | None = None,
    attacks: tuple[str, ...] | None = None,
    settings: dict[str, bool] | None = None,
    custom: Mapping[str, View] | None = None,
    *,
    capture: bool = True,
) -> _Timed:
    """A check on local roles (every view that needs no lab network, and every attack, by default),
    timed; the runs are captured where this process may (root), unless `capture` is off."""
    from lab.attacks import ATTACK_IDS
    from lab.checker.backends.local import LocalBackend
    from lab.checker.check import run_check

    chosen_views, chosen_attacks = views or views_here(lab_network=False), attacks or ATTACK_IDS
    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        template = StateDir(work / "template").ensure()
        backend = LocalBackend(template, work / "lanes")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"check: {', '.join(chosen_views)}, local", total=None)
            result = asyncio.run(
                run_check(
                    backend,
                    template,
                    chosen_views,
                    chosen_attacks,
                    jobs,
                    work / "out",
                    lambda r: progress.advance(task),
                    settings,
                    custom,
                    capture=capture,
                )
            )
        wall = time.perf_counter() - started
        wire = [
            *(work / "out").glob("evidence/*/run.pcapng"),
            *(work / "out").glob("evidence/*/sequence.svg"),
        ]
        return _Timed(
            result.duration_s,
            wall,
            result.scenarios_s,
            len(result.results),
            len(result.errors),
            captured=sum(r.diagram is not None for r in result.results.values()),
            wire_kb=sum(path.stat().st_size for path in wire) / 1024,
            verdicts={i: (r.verdict.verdict, r.verdict.blocked_by) for i, r in result.results.items()},
        )


def _channel_check_args(attacks: tuple[str, ...]) -> str:
    """MITMLAB_CHECK_ARGS for the lab channel's views, and only these attacks where some are chosen."""
    return " ".join([*(f"--view {name}" for name in CHANNEL_VIEWS), *(f"--attack {a}" for a in attacks)])


def _compose_check(jobs: int, attacks: tuple[str, ...]) -> _Timed:
    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        reports = Path(scratch)
        lab = ComposeLab(
            project="mitmlab-bench",
            settings={
                "MITMLAB_JOBS": str(jobs),
                "MITMLAB_CHECK_ARGS": _channel_check_args(attacks),
                "MITMLAB_REPORTS": str(reports),
                "MITMLAB_REPORT_PORT": str(free_port()),
                "MITMLAB_LIVE_PORT": str(free_port()),
            },
        )
        lab.preflight()
        image = lab.image("checker")
        with console.status("docker compose build (cached) ..."):
            started = time.perf_counter()
            lab.compose("build", "--quiet")
            build = time.perf_counter() - started
        try:
            with console.status("the full check, in containers ..."):
                started = time.perf_counter()
                lab.compose("up", "--detach", "--no-build")
                deadline = started + 600
                while not list(reports.glob("*/evidence/*")) and time.perf_counter() < deadline:
                    time.sleep(0.05)
                first_verdict = time.perf_counter() - started
                lab.wait("checker", timeout=1800)
                up_to_report = time.perf_counter() - started
        finally:
            lab.down()
        (directory,) = [d for d in reports.iterdir() if (d / "report.json").exists()]
        summary = json.loads((directory / "report.json").read_text())["summary"]
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return _Timed(
        check=summary["duration_s"],
        runs=summary["runs"],
        errors=summary["error"],
        build=build,
        first_verdict=first_verdict,
        report=up_to_report,
        image_mb=int(size.stdout.strip() or 0) / 1e6,
    )


@bench.command(name="crypto")
@json_option
def crypto_command(json_path: Path | None) -> None:
    """Seed 003's table: AES-128-CBC vs RSA-1024/2048, 1000 encrypt/decrypt round trips each."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=crypto.STEPS)
        rows = crypto.run(lambda: progress.advance(task))
    aes, bulk = rows[0], rows[-1]
    table = Table(title=f"seed 003 混合加密 here: {crypto.ROUNDS} round trips of {len(crypto.MESSAGE)} bytes")
    for column in (
        "algorithm",
        "time",
        "throughput",
        "time / AES",
        "bulk AES / this",
        "seed 003",
        "seed ratio",
    ):
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    for row in rows:
        seed = crypto.SEED_MS.get(row.name)
        table.add_row(
            row.name,
            f"{row.ms:,.2f} ms",
            f"{row.bytes_per_second / 1000:,.1f} KB/s",
            f"{row.ms / aes.ms:,.0f}x" if row is not bulk else "",
            f"{bulk.bytes_per_second / row.bytes_per_second:,.0f}x",
            f"{seed:.2f} ms" if seed else "",
            f"{seed / crypto.SEED_MS['aes_128_cbc']:.0f}x" if seed else "",
        )
    console.print(table)
    if json_path is not None:
        _write_json(json_path, [vars(row) for row in rows])
