"""`mitmlab check`, `mitmlab demo` and `mitmlab report`: run scenarios, narrate one, review reports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lab import system
from lab.attacks import ATTACK_IDS
from lab.capture import capture_refused
from lab.channel.protections import PROTECTION_IDS
from lab.checker.backends import Backend
from lab.checker.backends.compose import ComposeBackend
from lab.checker.backends.local import LocalBackend
from lab.checker.check import CheckResult, run_check
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.checker.views import CELL_KINDS, VIEWS, views_here
from lab.cli.errors import EXIT_SETUP, fail, reported_errors, stderr
from lab.cli.options import attack_option, endpoint, endpoint_option, protection_options, protections_from
from lab.containers import ComposeLab, ContainersError, in_compose
from lab.files import UnsafeFolderError, write_private
from lab.forward import forward as forward_connections
from lab.mitm import live_view
from lab.narrate import print_timeline
from lab.report.model import build
from lab.report.serve import report_server
from lab.report.writers import (
    CELL_GLYPH,
    FILES,
    SYMBOL,
    NotAReport,
    load_report,
    prepare_report_folder,
    write_report,
)
from lab.stacks import ARP, LINK_LAYER, NAMES, POSITIONINGS, PROTECTIONS_BY_ID, STACKS, attacks_on
from lab.stacks.real_tls import PROBE
from lab.stacks.scenario import LAB_CHANNEL, Scenario
from lab.state import StateDir, StateError
from lab.verdict import NOT_RUN_HERE

LOG_WIDTH = 160
"""The columns of the tables where the output is not a terminal (a container's log, a file), whose
width rich cannot know and takes as 80, too narrow for them."""
console = Console(highlight=False, width=None if sys.stdout.isatty() else LOG_WIDTH)
PROGRESS_EVERY_S = 5.0
"""How often the check says how far it is, where no progress bar can be drawn (a container's log)."""
PROTECTION_SHORT = {p: protection.short for p, protection in PROTECTIONS_BY_ID.items()}
CHANNEL_ATTACKS = attacks_on(LAB_CHANNEL)
CLIENT_STACKS: Final = {client: stack.id for stack in STACKS.values() for client in stack.clients}
"""Every real client's configuration, and the stack it plays on."""
EXIT_RUN_ERRORS = 8
CELL_STYLE = {
    "needed": "bold red",
    "enough_alone": "bold green",
    "part_of_a_set": "green",
    "no_effect": "dim",
    "undetermined": "bold yellow",
}
HEADLINE_LEGEND = "\n".join(
    f"{kind.glyph} {kind.value.replace('_', ' ')}: {kind.legend}" for kind in CELL_KINDS
)
VERDICT_STYLE = {
    "compromised": "bold red",
    "blocked": "bold green",
    "unaffected": "dim",
    "error": "bold yellow",
    NOT_RUN_HERE: "dim italic",
}


def view_flag_options(f: Any) -> Any:
    """A --NAME switch for every flag a view declares (`View.flags`)."""
    for view in reversed(list(VIEWS.values())):
        for name, text in reversed(list(view.flags.items())):
            f = click.option(f"--{name}", name, is_flag=True, help=text)(f)
    return f


def make_backend(name: str, scratch: Path, *, namespaces: bool = False) -> tuple[Backend, StateDir]:
    """The backend, and the state directory whose secrets (the password, the server key) the roles use.

    local: a fresh state directory in `scratch`, copied to every lane (with `namespaces`, each lane's
    roles on a lab network of their own: docs/arp.md). compose (in the checker's container): the lab's
    state volume, which the role containers were started from."""
    if name == "local":
        template = StateDir(scratch / "template").ensure()
        return LocalBackend(template, scratch, namespaces=namespaces), template
    volume = os.environ.get("MITMLAB_STATE_DIR", "/lab/state")
    if not volume:
        raise StateError("MITMLAB_STATE_DIR is empty: set it to the compose lab's state volume")
    template = StateDir(Path(volume)).require()
    return ComposeBackend(template.secret()), template


def _live_view_url(state: StateDir) -> str:
    """The compose lab's live view as the host reaches it (the `live` service), with the lab's token."""
    live = os.environ.get("MITMLAB_LIVE_URL")
    if not live:
        return "(the live service: its URL with the token is in `docker compose logs attacker`)"
    return f"{live.rstrip('/')}/?token={live_view.token(state.secret())}"


def report_folder_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """--out as a path (a click callback); an empty one, which would be the current directory, is a
    usage error."""
    if value == "":
        raise click.BadParameter("an empty path would be the current directory: name the report's folder")
    return None if value is None else Path(value)


@click.command(
    epilog="""\b
Exit codes: 0 the run completed (whatever the verdicts, runs not run here included); 8 some
scenarios ended in error (the report says which and why); 2 usage error; 7 the output directory is
refused (another user's, a link, or holding what no report leaves) or cannot be written, or the roles
could not be set up."""
)
@click.option(
    "--view",
    "view",
    type=click.Choice([*VIEWS, "all"]),
    multiple=True,
    default=["all"],
    show_default=True,
    help="Which view to compute (repeatable), or all of them: "
    + "; ".join(f"{name}: {view.summary}" for name, view in VIEWS.items())
    + ". all: every view; positioning only in the compose lab (ask for it by name on the local backend, "
    "as root).",
)
@view_flag_options
@attack_option(ATTACK_IDS, "every attack")
@click.option(
    "--backend",
    type=click.Choice(["local", "compose"]),
    default="local",
    show_default=True,
    help="local: role processes on loopback, no Docker needed. compose: the roles in the containers "
    "of docker-compose.yml (from the host it runs `docker compose up` for you and takes the lab down "
    "afterwards; the report lands in the same place).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    callback=report_folder_option,
    help="Report directory: a new one, an empty one of yours, or a previous report of yours (which is "
    "replaced); made for you alone (0700). Default: reports/<timestamp>/.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=16),
    default=2,
    show_default=True,
    help="Scenarios run in parallel (one set of roles each).",
)
@click.option(
    "--positioning",
    type=click.Choice(list(POSITIONINGS)),
    default=NAMES,
    show_default=True,
    help="How the attacker gets on the path in every scenario (the lab channel's and the real clients'): "
    + "; ".join(f"{name}: {what}" for name, what in POSITIONINGS.items())
    + ". arp: in the compose lab, between its containers; on the local backend, in network namespaces "
    "the lab makes (as root).",
)
@click.option(
    "--static-arp",
    is_flag=True,
    help=f"With --positioning arp: every client applies static_arp ({LINK_LAYER['static_arp'].doc}).",
)
@click.option(
    "--no-install",
    is_flag=True,
    envvar="MITMLAB_NO_INSTALL",
    help="Install nothing (also MITMLAB_NO_INSTALL=1). By default, run as root where apt-get exists, "
    "the check first installs the Debian packages its views need and this machine lacks "
    f"({', '.join(sorted(set(system.PACKAGES.values())))}), saying which and why, apt's output in a log "
    "file. Where nothing is installed, the runs that need a missing program are `not run here`, "
    "counted apart, with the line that installs it.",
)
@click.option(
    "--no-capture",
    is_flag=True,
    help="Write no pcapng of the runs. By default the attacker captures every run's connections where "
    "it has a raw socket (as root locally; always in the compose lab): evidence/<run>/run.pcapng, "
    "which opens in Wireshark (docs/wireshark.md).",
)
def check(
    view: tuple[str, ...],
    attacks: tuple[str, ...],
    backend: str,
    out: Path | None,
    jobs: int,
    positioning: str,
    static_arp: bool,
    no_install: bool,
    no_capture: bool,
    **flags: bool,
) -> None:
    """Run every attack against every protection and write the detection report.

    The headline table says, for each attack and protection, whether it is needed, stops the attack
    alone, is part of a set that stops it, or has no effect: computed from the runs, each linked to
    its evidence. The defence sets say, per attack, every minimal set of protections that stops it.
    """
    chosen = attacks or ATTACK_IDS
    if static_arp and positioning != ARP:
        raise click.UsageError("--static-arp is a defence against ARP positioning: add --positioning arp")
    views = chosen_views(view, backend, positioning)
    out = out or default_out()
    writable(out)  # before any run: a folder the lab will not write into is refused at once
    if backend == "compose" and not in_compose():
        _check_in_containers(views, attacks, out.absolute(), jobs, flags, positioning, static_arp, no_capture)
        return
    if not no_install and not in_compose():
        bring_programs(views, capture=not no_capture)
    with (
        refused_report_folder(out),
        tempfile.TemporaryDirectory(prefix="mitmlab-check-") as scratch,
        reported_errors(),
    ):
        lab_backend, template = make_backend(
            backend, Path(scratch), namespaces=backend == "local" and needs_lab_network(views, positioning)
        )
        if in_compose():
            console.print(
                f"The check runs; watch lane 1's flows in mitmweb's live view, for your eyes only: "
                f"{_live_view_url(template)}",
                soft_wrap=True,
            )
        result = with_progress(
            lambda on_result, on_planned: run_check(
                lab_backend,
                template,
                views,
                chosen,
                jobs,
                out,
                on_result,
                flags,
                on_planned=on_planned,
                positioning=positioning,
                static_arp=static_arp,
                capture=not no_capture,
            )
        )
    report = build(result)
    with refused_report_folder(out):
        write_report(report, out)
    print_summary(report)
    if in_compose():
        _hand_over(out)
        console.print(
            f"\nReport written to {os.environ.get('MITMLAB_HOST_REPORTS', '/reports')}/{out.name}/ on the "
            f"host, served at {os.environ.get('MITMLAB_REPORT_URL', '(the report service)')}",
            soft_wrap=True,  # a path and a URL, never cut in two
        )
    else:
        say_where(out)
    if result.errors:
        fail(EXIT_RUN_ERRORS, f"{len(result.errors)} run(s) ended in error; see the report.")


def bring_programs(views: tuple[str, ...], *, capture: bool) -> None:
    """As root with apt-get, install what the views (and, as root, the captures) need and this machine
    lacks, saying so in one line; where that cannot be, or fails, the runs that need it say so."""
    users: dict[str, list[str]] = {}
    for name in views:
        for program in VIEWS[name].programs:
            users.setdefault(program, []).append(f"the {name} view")
    if capture and os.geteuid() == 0:  # locally only root captures (docs/wireshark.md)
        users.setdefault("libpcap", []).append("the captures")
    missing = system.missing(users)
    if not missing or system.why_not_installable() is not None:
        return
    packages = sorted({system.PACKAGES[p] for p in missing if p in system.PACKAGES})
    if not packages:
        return
    log = system.install_log()
    needed_by = list(dict.fromkeys(user for p in missing for user in users[p]))
    stderr.print(
        f"Installing {', '.join(packages)} with apt-get, once: {' and '.join(needed_by)} "
        f"{'needs' if len(needed_by) == 1 else 'need'} "
        f"{'it' if len(packages) == 1 else 'them'} (apt's output: {log}; --no-install skips this)",
        soft_wrap=True,
    )
    try:
        with stderr.status(f"apt-get install {' '.join(packages)} ..."):
            system.install(packages=packages, log=log)
    except system.InstallFailed as exc:
        stderr.print(
            f"[yellow]Not installed:[/] {escape(str(exc))}. The check goes on; the runs that need "
            f"{', '.join(missing)} are not run here.",
            soft_wrap=True,
        )


def needs_lab_network(views: tuple[str, ...], positioning: str) -> bool:
    """Whether the check's runs need roles that are hosts of a lab network (docs/arp.md)."""
    return positioning == ARP or any(VIEWS[name].needs_lab_network for name in views)


def chosen_views(view: tuple[str, ...], backend: str, positioning: str) -> tuple[str, ...]:
    """The views asked for; `all`: every view that runs here by default, those that need a lab network
    only in the compose lab (whose containers are one), and not when every run goes through ARP."""
    if "all" not in view:
        views = tuple(name for name in VIEWS if name in view)
        both_ways = [name for name in views if VIEWS[name].needs_lab_network]
        if both_ways and positioning == ARP:
            raise click.UsageError(
                f"the {both_ways[0]} view runs by names and through ARP itself: leave out --positioning arp"
            )
        return views
    return views_here(lab_network=backend == "compose" and positioning == NAMES)


def say_where(out: Path) -> None:
    """Where the report is; the last line names the page to open."""
    console.print(
        f"\nReports: {', '.join(str(out / name) for name in FILES)}; evidence in {out / 'evidence'}",
        soft_wrap=True,
    )
    console.print(
        f"Open {out / 'report.html'} in a browser, or serve it: mitmlab report serve {out}", soft_wrap=True
    )


def default_out() -> Path:
    """reports/<timestamp> (in the compose lab /reports/<timestamp>-<lab>, or the host's choice):
    locally, a name nothing has yet (<timestamp>-2, ... when two checks start in one second)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if in_compose():  # labs that share ./reports each find their own: <timestamp>-<compose project>
        return Path("/reports") / (
            os.environ.get("MITMLAB_RUN") or f"{stamp}-{os.environ.get('MITMLAB_LAB')}"
        )
    names = itertools.chain([stamp], (f"{stamp}-{n}" for n in itertools.count(2)))
    return next(Path("reports") / name for name in names if not os.path.lexists(Path("reports") / name))


def _hand_over(out: Path) -> None:
    """Give the report to whoever owns the folder it is in (the host user's ./reports), not to root:
    owners change, modes stay, and no link is followed."""
    owner = out.parent.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return
    with contextlib.suppress(OSError):  # a mount that maps users its own way keeps its owners
        os.chown(out, owner.st_uid, owner.st_gid, follow_symlinks=False)
        for _, folders, names, folder in os.fwalk(out, follow_symlinks=False):
            for name in [*folders, *names]:
                os.chown(name, owner.st_uid, owner.st_gid, dir_fd=folder, follow_symlinks=False)


def _check_in_containers(
    views: tuple[str, ...],
    attacks: tuple[str, ...],
    out: Path,
    jobs: int,
    flags: dict[str, bool],
    positioning: str,
    static_arp: bool,
    no_capture: bool,
) -> None:
    """`docker compose up` with this check, its report written to `out`; then the lab comes down."""
    arguments = [f"--view {name}" for name in views] if views != tuple(VIEWS) else []
    arguments += [f"--attack {attack}" for attack in attacks]
    arguments += [f"--{name}" for name, on in flags.items() if on]
    arguments += [f"--positioning {positioning}"] if positioning != NAMES else []
    arguments += ["--static-arp"] if static_arp else []
    arguments += ["--no-capture"] if no_capture else []
    lab = ComposeLab(
        # Not the compose file's own name: a lab started by hand with `docker compose up` is left alone.
        project=os.environ.get("COMPOSE_PROJECT_NAME", "mitm-lab-check"),
        settings={
            "MITMLAB_JOBS": str(jobs),
            "MITMLAB_CHECK_ARGS": " ".join(arguments),
            "MITMLAB_REPORTS": str(out.parent.resolve()),
            "MITMLAB_RUN": out.name,
        },
    )
    try:
        lab.preflight()
    except ContainersError as exc:
        fail(EXIT_SETUP, str(exc))
    with refused_report_folder(out):
        out.rmdir()  # prepared, empty: the checker's container makes it afresh, as its own
    try:
        with stderr.status("building the image and starting the lab (docker compose up) ..."):
            lab.up()
        with stderr.status("the check is running in the containers ..."):
            code = lab.wait("checker", timeout=3600)
        logs = lab.logs("checker")
    except ContainersError as exc:
        fail(EXIT_SETUP, str(exc))
    except subprocess.TimeoutExpired as exc:
        fail(EXIT_SETUP, f"docker compose did not finish within {exc.timeout:g} s")
    except KeyboardInterrupt:
        fail(EXIT_SETUP, "interrupted; the lab is taken down")
    finally:
        with stderr.status("docker compose down ..."):
            lab.down()
    if not (out / "report.json").exists():
        fail(EXIT_SETUP, f"the checker container ended ({code}) without a report: {logs.strip()[-2000:]}")
    print_summary(load_report(out))
    say_where(out)
    if code:
        sys.exit(code)


def writable(out: Path) -> None:
    """`out` made ready for the report before any run (`prepare_report_folder`: making it is the test
    that it can be written); otherwise one sentence and exit 7."""
    with refused_report_folder(out):
        prepare_report_folder(out)


@contextlib.contextmanager
def refused_report_folder(out: Path) -> Iterator[None]:
    """A report folder the lab will not or cannot write into: one sentence and exit 7."""
    try:
        yield
    except UnsafeFolderError as exc:
        fail(EXIT_SETUP, str(exc))
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot write the report to {out}: {exc.strerror or exc}")


def with_progress(start: Any) -> CheckResult:
    """Run the check with a progress bar on a terminal; elsewhere (`docker compose up`'s log, a file),
    a bar cannot be drawn: a plain line every few seconds instead. Its total is the runs the views
    have asked for so far: it grows while a search decides its next runs, and ends on the runs that
    ran."""
    if not stderr.is_terminal:
        return _with_progress_lines(start)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("running scenarios", total=None)
        done = 0

        def on_result(result: RunResult) -> None:
            nonlocal done
            done += 1
            progress.update(task, completed=done)

        def on_planned(runs: int) -> None:
            progress.update(task, total=runs)

        outcome: CheckResult = asyncio.run(start(on_result, on_planned))
    return outcome


def _with_progress_lines(start: Any) -> CheckResult:
    began = said = time.monotonic()
    done = planned = 0

    def on_result(result: RunResult) -> None:
        nonlocal done, said
        done += 1
        now = time.monotonic()
        if now - said >= PROGRESS_EVERY_S:
            said = now
            stderr.print(f"running scenarios: {done}/{planned} asked for so far, {now - began:.0f} s")

    def on_planned(runs: int) -> None:
        nonlocal planned
        planned = runs

    outcome: CheckResult = asyncio.run(start(on_result, on_planned))
    return outcome


def print_summary(report: dict[str, Any]) -> None:
    s = report["summary"]
    runs, duration, compromised, blocked, unaffected, error = (
        _plain(s[key]) for key in ("runs", "duration_s", "compromised", "blocked", "unaffected", "error")
    )
    not_run = s.get(NOT_RUN_HERE, 0)  # a report written before version 5 has none
    console.print(
        f"[bold]{runs} runs in {duration} s:[/] [red]{compromised} compromised[/], "
        f"[green]{blocked} blocked[/], {unaffected} unaffected, [yellow]{error} errors[/]"
        + (f", [italic]{_plain(not_run)} not run here[/]" if not_run else "")
    )
    if report["headline"]:
        console.print(_headline_table(report))
    for name in report["views"]:
        if "columns" in report["sections"][name]:  # a table of clients (clients, ssh)
            console.print(_victims_table(report, name))
    for name in report["views"]:
        lines = report["sections"][name].get("summary", [])
        if lines:
            console.print(f"\n[bold]{_plain(name)}[/]\n" + "\n".join(_plain(line) for line in lines))
    captured = s.get("captured", 0)  # a report written before captures has neither
    if captured:
        console.print(f"\n{_plain(captured)} runs captured: evidence/<run>/run.pcapng (docs/wireshark.md)")
    if s.get("capture_notes"):
        not_captured = _plain(s["runs"] - captured)
        console.print(f"[dim]{not_captured} runs not captured: {_plain('; '.join(s['capture_notes']))}[/]")
    if not_run:
        programs = s.get("not_installed") or []
        install = s.get("install")
        how = f" To run them: {_plain(install)} (as root), then check again." if install else ""
        are = "is" if len(programs) == 1 else "are"
        why = (
            f"{_plain(', '.join(programs))} {are} not installed on this machine"
            if programs
            else "this machine does not allow them (each run says why)"
        )
        console.print(f"\n{_plain(not_run)} runs not run here: {why}.{how}", soft_wrap=True)
    errors = [x for x in report["scenarios"] if x["verdict"] == "error"]
    for scenario in errors[:10]:
        console.print(
            f"[yellow]error[/] {_plain(scenario['id'])} ({_plain(scenario['attack'])}, "
            f"{_plain(scenario['profile'])}): {_plain(scenario['error'])}"
        )


def _plain(value: object) -> str:
    """A value of the report, shown as it is: report.json is a file anyone may have written."""
    return escape(str(value))


def _compact_table(title: str, first_column: str, caption: str | None = None) -> Table:
    """A grid of one-glyph cells that fits a terminal."""
    table = Table(
        title=title,
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column(first_column, no_wrap=True)
    return table


def _headline_table(report: dict[str, Any]) -> Table:
    table = _compact_table("headline: which protection stops which attack", "attack", HEADLINE_LEGEND)
    for protection in report["protections"]:
        table.add_column(PROTECTION_SHORT[protection], justify="center", no_wrap=True)
    for attack, cells in report["headline"].items():
        table.add_row(
            _plain(attack),
            *(f"[{CELL_STYLE[cells[p]]}]{CELL_GLYPH[cells[p]]}[/]" for p in report["protections"]),
        )
    return table


def _victims_table(report: dict[str, Any], view: str) -> Table:
    """A view of clients (`clients`, `ssh`) turned on its side for a terminal: a row per client, a
    column per attack."""
    section = report["sections"][view]
    title = f"{_plain(view)} (✗ compromised, ✓ blocked by, - unaffected, ! error, ∅ not run here)"
    table = _compact_table(title, "client")
    table.padding = (0, 0)  # the columns stay apart by the box's own space: the table fits 100 columns
    for attack in section["rows"]:
        table.add_column(_plain(attack).replace("-", "-\n"), justify="center", no_wrap=True)
    cells = {(c["client"], c["attack"]): c for c in section["cells"]}
    for column in section["columns"]:
        row = []
        for attack in section["rows"]:
            cell = cells[(column["id"], attack)]
            by = (
                f" {_plain(PROTECTION_SHORT.get(cell['protection'], cell['protection']))}"
                if cell["protection"]
                else ""
            )
            row.append(f"[{VERDICT_STYLE[cell['verdict']]}]{SYMBOL[cell['verdict']]}{by}[/]")
        table.add_row("your program" if column["id"].startswith(PROBE) else _plain(column["id"]), *row)
    return table


@click.command(
    epilog="Attacks on the lab channel: "
    + ", ".join(CHANNEL_ATTACKS)
    + ". With --client: "
    + "; ".join(
        f"{stack.id}: {', '.join(attacks_on(stack.id))}" for stack in STACKS.values() if stack.clients
    )
    + "."
)
@click.argument("attack", type=click.Choice(ATTACK_IDS), required=False)
@click.option(
    "--client",
    type=click.Choice(list(CLIENT_STACKS)),
    help="A real client, in one of its configurations, instead of the lab's own (the clients and ssh "
    "views' columns); its protections are its own settings, so the switches do not apply.",
)
@protection_options
@click.option(
    "--server-without",
    "server_without",
    type=click.Choice(PROTECTION_IDS),
    multiple=True,
    help="The server has this protection off, whatever the client has (repeatable): an asymmetric scenario.",
)
@click.option(
    "--server-with",
    "server_with",
    type=click.Choice(PROTECTION_IDS),
    multiple=True,
    help="The server has this protection on, whatever the client has (repeatable).",
)
@click.option(
    "--capture",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the run's frames as the attacker captured them (both legs: the client's to the attacker "
    "and the attacker's to the server) as pcapng to this file, for Wireshark and the lab's dissector "
    "(docs/wireshark.md); readable by you alone (0600: it holds the password and the TLS keys). Needs "
    "a raw socket: root locally; the compose lab's attacker has one.",
)
def demo(
    attack: str | None,
    client: str | None,
    server_without: tuple[str, ...],
    server_with: tuple[str, ...],
    capture: Path | None,
    **switches: Any,
) -> None:
    """Run one scenario and narrate it: who sent what, what the attacker did, who refused and why.

    Without ATTACK: a clean session. The switches set the protections of both sides; --server-without
    and --server-with then set the server apart. With --client, a real client plays instead, on its
    stack (real TLS, or SSH as root), with its own settings.

    \b
    Examples:
      mitmlab demo bit-flip --no-mac        no MAC: the attacker changes a transfer's recipient
      mitmlab demo key-compromise --no-forward-secrecy --server-with forward_secrecy
                                            forward secrecy on one side only: the stolen key decrypts it all
      mitmlab demo host-key-swap --client tofu
                                            SSH's first contact, as root: ssh takes the attacker's key
    """
    refused = capture_refused() if capture is not None and not in_compose() else None
    if refused:
        fail(EXIT_SETUP, refused)
    protections = protections_from(switches)
    if client is not None:
        stack = CLIENT_STACKS[client]
        if attack is not None and attack not in attacks_on(stack):
            raise click.UsageError(
                f"{attack} does not apply to {client}'s stack ({stack}): try {', '.join(attacks_on(stack))}"
            )
        if server_without or server_with:
            raise click.UsageError(
                f"{client} has its own settings: --server-without and --server-with set the lab channel's"
            )
        scenario = Scenario.visit(stack, attack, client)
    elif attack is not None and attack not in CHANNEL_ATTACKS:
        stacks = " or ".join(s for s in STACKS if attack in attacks_on(s))
        raise click.UsageError(f"{attack} is an attack on {stacks}: name a client of it with --client")
    else:
        server = protections.without(*server_without).plus(*server_with)
        scenario = Scenario(attack, protections, server, pin_first=protections.pinning)
    title = f"{attack or 'no attack'} against {scenario.profile}"
    console.print(f"[bold]Demo:[/] {title}\n")
    with tempfile.TemporaryDirectory(prefix="mitmlab-demo-") as scratch, reported_errors():
        result = asyncio.run(_run_one(scenario, Path(scratch), capture))
    if capture is not None:
        console.print(f"[dim]Captured: {capture} (docs/wireshark.md)[/]\n")
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


async def _run_one(scenario: Scenario, scratch: Path, capture: Path | None = None) -> RunResult:
    """On local role processes; in a container of the compose lab, on the running lab's first lane.
    With `capture`, the run's pcapng is copied there."""
    backend, template = make_backend("compose" if in_compose() else "local", scratch)
    try:
        lanes = await backend.start(1)
        runner = Runner(backend, lanes, ground_truth(template), scratch / "out", capture=capture is not None)
        result = await runner.run(scenario)
    finally:
        await backend.stop()
    if capture is not None:
        if result.capture is None:
            fail(EXIT_SETUP, f"the run was not captured: {result.capture_note}")
        try:
            write_private(capture, (scratch / "out" / result.capture).read_bytes())
        except OSError as exc:  # e.g. another user's link there, in a folder others can write
            fail(EXIT_SETUP, f"cannot write the capture to {capture}: {exc.strerror or exc}")
    return result


@click.group()
def report() -> None:
    """Review a report directory written by `mitmlab check`."""


@report.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
def show(directory: Path) -> None:
    """Print a report's summary and headline table again."""
    if not (directory / "report.json").exists():
        fail(EXIT_SETUP, f"{directory} has no report.json: is it a `mitmlab check` output directory?")
    try:
        print_summary(load_report(directory))
    except NotAReport as exc:
        fail(EXIT_SETUP, str(exc))
    except (KeyError, TypeError) as exc:
        fail(EXIT_SETUP, f"{directory / 'report.json'} lacks what a report holds ({exc})")
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot read {directory / 'report.json'}: {exc.strerror or exc}")


@report.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on: loopback, so only this machine can reach it (any other address "
    "only inside the compose lab's container, whose published port binds to 127.0.0.1).",
)
@click.option(
    "--newest",
    is_flag=True,
    help="DIRECTORY holds reports: serve the newest, looked up at every request (a page that reloads "
    "itself until the first one is written).",
)
@click.option("--lab", help="With --newest: only the reports of this compose lab (<timestamp>-<lab>).")
def serve(directory: Path, port: int, host: str, newest: bool, lab: str | None) -> None:
    """Serve the HTML report on 127.0.0.1 (only this machine can reach it).

    Only the report's own regular files are served: never through a symbolic link, and no folder
    listings (both are a 404); `/`, with any query (`/?only=<run>`), is report.html."""
    if host not in ("127.0.0.1", "localhost", "::1") and not in_compose():
        fail(EXIT_SETUP, f"the report is served on loopback only, not on {host}")
    try:
        httpd = report_server(directory, host, port, newest=newest, lab=lab)
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot listen on {host}:{port}: {exc.strerror}")
    page = "" if newest else "report.html"
    # In the compose lab the host reaches the report on its own port, not the container's.
    url = os.environ.get("MITMLAB_REPORT_URL") if in_compose() else None
    console.print(f"{url or f'http://{host}:{httpd.server_address[1]}/'}{page}  (Ctrl-C stops)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # docker compose down: stop at once
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()


@click.command()
@endpoint_option("--listen", "127.0.0.1:8081", "Where to accept connections.")
@click.argument("target", callback=endpoint)
def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Forward TCP connections to TARGET (HOST:PORT): the compose lab's live view of mitmweb."""
    try:
        asyncio.run(forward_connections(listen, target))
    except OSError as exc:
        fail(EXIT_SETUP, f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}")
