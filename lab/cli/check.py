"""`mitmlab check`, `mitmlab demo` and `mitmlab report`: run scenarios, narrate one, review reports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import http.server as http_server  # `from mitmproxy import http` elsewhere shadows nothing here
import tempfile
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lab.attacks import ATTACK_IDS
from lab.checker.backends import Backend
from lab.checker.backends.local import LocalBackend
from lab.checker.check import CheckResult, planned_runs, run_check
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.checker.scenarios import VIEWS, Scenario
from lab.cli.errors import EXIT_SETUP, fail, reported_errors, stderr
from lab.cli.options import protection_options, protections_from
from lab.narrate import print_timeline
from lab.report.model import build
from lab.report.writers import CELL_GLYPH, FILES, SYMBOL, load_report, write_report
from lab.state import StateDir

console = Console(highlight=False)
EXIT_RUN_ERRORS = 8
CELL_STYLE = {
    "needed": "bold red",
    "stops_alone": "bold green",
    "no_effect": "dim",
    "undetermined": "bold yellow",
}
# Headers short enough for an 80-column terminal; the legend names them in full.
SHORT = {
    "encryption": "enc",
    "ca_trust": "ca",
    "hostname": "host",
    "validity": "valid",
    "pinning": "pin",
    "mac": "mac",
    "sequence_numbers": "seq",
    "server_random": "srand",
    "per_direction_keys": "2keys",
    "transcript": "trans",
    "forward_secrecy": "fs",
}
HEADLINE_LEGEND = (
    "● needed: without it, recommended lets the attack through\n"
    "○ alone: added alone to a weak profile, it stops the attack\n"
    "· no effect   ? undetermined (a run it depends on failed)"
)
VERDICT_STYLE = {
    "compromised": "bold red",
    "blocked": "bold green",
    "unaffected": "dim",
    "error": "bold yellow",
}


def make_backend(name: str, template: StateDir, workdir: Path) -> Backend:
    if name == "local":
        return LocalBackend(template, workdir)
    fail(EXIT_SETUP, "the compose backend comes with the containers issue; use --backend local for now")


@click.command(
    epilog="""\b
Exit codes: 0 the run completed (whatever the verdicts); 8 some scenarios ended in error (the
report says which and why); 2 usage error; 7 the output directory or the roles could not be set up."""
)
@click.option(
    "--view",
    "view",
    type=click.Choice([*VIEWS, "all"]),
    default="all",
    show_default=True,
    help="Which view to compute: ablation, isolation, ladder, or all three.",
)
@click.option(
    "--attack",
    "attacks",
    type=click.Choice(ATTACK_IDS),
    multiple=True,
    help="Only this attack (repeatable). Default: every attack.",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "compose"]),
    default="local",
    show_default=True,
    help="local: role processes on loopback. compose: the docker compose services (comes with the "
    "containers issue; for now it says so and stops).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report directory. Default: reports/<timestamp>/.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=16),
    default=2,
    show_default=True,
    help="Scenarios run in parallel (one set of roles each).",
)
def check(view: str, attacks: tuple[str, ...], backend: str, out: Path | None, jobs: int) -> None:
    """Run every attack against every protection and write the detection report.

    Views: ablation (recommended minus one protection), isolation (a weak profile in which the attack
    succeeds, plus one protection), ladder (the brief's story, from plaintext to recommended). The
    headline table says, for each attack and protection, whether it is needed, stops the attack alone,
    or has no effect: computed from the runs, each linked to its evidence.
    """
    views = VIEWS if view == "all" else (view,)
    chosen = attacks or ATTACK_IDS
    out = out or Path("reports") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    _writable(out)
    with tempfile.TemporaryDirectory(prefix="mitmlab-check-") as scratch, reported_errors():
        template = StateDir(Path(scratch) / "template").ensure()
        result = _with_progress(
            lambda on_result: run_check(
                make_backend(backend, template, Path(scratch)), template, views, chosen, jobs, out, on_result
            ),
            planned_runs(views, chosen),
        )
    report = build(result)
    write_report(report, out)
    print_summary(report)
    console.print(
        f"\nReports: {', '.join(str(out / name) for name in FILES)}; evidence in {out / 'evidence'}"
    )
    if result.errors:
        fail(EXIT_RUN_ERRORS, f"{len(result.errors)} run(s) ended in error; see the report.")


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot write the report to {out}: {exc.strerror or exc}")


def _with_progress(start: Any, planned: int) -> CheckResult:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("running scenarios", total=planned)
        done = 0

        def on_result(result: RunResult) -> None:
            nonlocal done
            done += 1
            total = progress.tasks[task].total or planned
            progress.update(task, completed=done, total=max(total, done + 1))

        outcome: CheckResult = asyncio.run(start(on_result))
        progress.update(task, total=done, completed=done)
    return outcome


def print_summary(report: dict[str, Any]) -> None:
    s = report["summary"]
    console.print(
        f"[bold]{s['runs']} runs in {s['duration_s']} s:[/] [red]{s['compromised']} compromised[/], "
        f"[green]{s['blocked']} blocked[/], {s['unaffected']} unaffected, [yellow]{s['error']} errors[/]"
    )
    table = Table(
        title="which protection stops which attack",
        caption=HEADLINE_LEGEND,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("attack", no_wrap=True)
    for protection in report["protections"]:
        table.add_column(SHORT[protection], justify="center", no_wrap=True)
    for attack in report["attacks"]:
        cells = report["headline"][attack]
        table.add_row(
            attack, *(f"[{CELL_STYLE[cells[p]]}]{CELL_GLYPH[cells[p]]}[/]" for p in report["protections"])
        )
    console.print(table)
    errors = [x for x in report["scenarios"] if x["verdict"] == "error"]
    for scenario in errors[:10]:
        console.print(
            f"[yellow]error[/] {scenario['id']} ({scenario['attack']}, {scenario['profile']}): "
            f"{scenario['error']}"
        )


@click.command(epilog="Attacks: " + ", ".join(ATTACK_IDS))
@click.argument("attack", type=click.Choice(ATTACK_IDS), required=False)
@protection_options
def demo(attack: str | None, **switches: Any) -> None:
    """Run one scenario and narrate it: who sent what, what the attacker did, who refused and why.

    Without ATTACK: a clean session. The switches set the protections of both sides, e.g.
    `mitmlab demo bit-flip --no-mac`.
    """
    protections = protections_from(switches)
    scenario = Scenario(attack, protections, pin_first=protections.pinning)
    title = f"{attack or 'no attack'} against {protections.describe()}"
    console.print(f"[bold]Demo:[/] {title}\n")
    with tempfile.TemporaryDirectory(prefix="mitmlab-demo-") as scratch, reported_errors():
        result = asyncio.run(_run_one(scenario, Path(scratch)))
    if scenario.pin_first:
        console.print("[dim]First a clean session straight to the server, so the key pin exists:[/]")
        print_timeline([e for events in result.pre_events.values() for e in events], console)
        console.print()
    print_timeline([e for events in result.events.values() for e in events], console)
    verdict = result.verdict
    if attack is None and verdict.verdict == "unaffected":
        console.print("\nNo attack: the session ran as the bank meant it to.")
        return
    line = f"\n[{VERDICT_STYLE[verdict.verdict]}]{SYMBOL[verdict.verdict]} {verdict.verdict.upper()}[/]"
    if verdict.breakages:
        line += ": " + "; ".join(b.detail for b in verdict.breakages)
    elif verdict.blocked_by:
        where = f"{verdict.step or '-'} ({verdict.refused_by_role})"
        line += f" by {verdict.blocked_by} at {where}: {verdict.message}"
    elif verdict.error or verdict.message:
        line += f": {verdict.error or verdict.message}"
    console.print(line)


async def _run_one(scenario: Scenario, scratch: Path) -> RunResult:
    template = StateDir(scratch / "template").ensure()
    backend = LocalBackend(template, scratch)
    lanes = await backend.start(1)
    try:
        return await Runner(backend, lanes, ground_truth(template), scratch / "out").run(scenario)
    finally:
        await backend.stop()


@click.group()
def report() -> None:
    """Review a report directory written by `mitmlab check`."""


@report.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
def show(directory: Path) -> None:
    """Print a report's summary and headline table again."""
    if not (directory / "report.json").exists():
        fail(EXIT_SETUP, f"{directory} has no report.json: is it a `mitmlab check` output directory?")
    print_summary(load_report(directory))


@report.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def serve(directory: Path, port: int) -> None:
    """Serve the HTML report on 127.0.0.1 (only this machine can reach it)."""
    handler = functools.partial(http_server.SimpleHTTPRequestHandler, directory=str(directory))
    try:
        httpd = http_server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
    console.print(f"http://127.0.0.1:{httpd.server_address[1]}/report.html  (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
