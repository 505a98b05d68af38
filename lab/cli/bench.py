"""`mitmlab bench`: speed measured as ratios against a reference in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lab.bench import crypto
from lab.bench.channel import Bench
from lab.bench.measure import Result, ratios
from lab.bench.proxy import ProxyBench
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
        json_path.write_text(json.dumps(rows, indent=2) + "\n")


json_option = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
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


@bench.command(name="check")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@json_option
def check_command(jobs: int, json_path: Path | None) -> None:
    """The full `mitmlab check --view all`, timed: runs per second (goal: the whole run under 60 s)."""
    from lab.attacks import ATTACK_IDS
    from lab.checker.backends.local import LocalBackend
    from lab.checker.check import run_check
    from lab.checker.scenarios import VIEWS

    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        template = StateDir(work / "template").ensure()
        backend = LocalBackend(template, work / "lanes")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("running the full check", total=None)
            result = asyncio.run(
                run_check(
                    backend, template, VIEWS, ATTACK_IDS, jobs, work / "out", lambda r: progress.advance(task)
                )
            )
        wall = time.perf_counter() - started
    runs = len(result.results)
    _report(
        f"mitmlab check --view all, {jobs} lanes (goal: under 60 s)",
        [
            Result("runs", runs, ""),
            Result("placements in the views", len(result.placements), ""),
            Result("wall time, set-up included", wall, "s"),
            Result("runs per second", runs / wall, "/s"),
            Result("runs in error", len(result.errors), ""),
        ],
        json_path,
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
        json_path.write_text(json.dumps([vars(row) for row in rows], indent=2) + "\n")
