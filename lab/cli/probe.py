"""`mitmlab probe -- COMMAND ...`: any program as the victim, against every TLS attack."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

import click

from lab.checker.check import run_check
from lab.checker.views.clients import Clients
from lab.cli.check import (
    EXIT_RUN_ERRORS,
    default_out,
    make_backend,
    print_summary,
    say_where,
    with_progress,
    writable,
)
from lab.cli.errors import fail, reported_errors
from lab.cli.options import attack_option, shown
from lab.clients.adapters import PLACEHOLDERS
from lab.report.model import build
from lab.report.writers import write_report
from lab.stacks import attacks_on
from lab.stacks.real_tls import PROBE, REAL_TLS

TLS_ATTACKS = attacks_on(REAL_TLS)


@click.command(
    context_settings={"ignore_unknown_options": True},
    epilog="""\b
Placeholders in COMMAND: {url} https://bank.lab:PORT/ · {http_url} http://bank.lab:PORT/ · {host}
bank.lab · {address} the address bank.lab means here · {port} {http_port} the HTTPS and HTTP ports ·
{cafile} the lab CA (PEM) · {resolve} bank.lab:PORT:ADDRESS, for curl's --resolve. The password is in
$MITMLAB_PASSWORD, the user in $MITMLAB_USER. Exit code 0 means the program got what it came for.
COMMAND runs in a folder of its own: an argument that names a file here is given by its full path.

\b
Examples:
  mitmlab probe -- curl -sS --resolve {resolve} --cacert {cafile} {url}
  mitmlab probe -- python3 my_client.py {url} {address} {cafile}
  mitmlab probe --attack self-signed --attack wrong-host -- curl -sSk --resolve {resolve} {url}
                                        curl -k: what the first one refuses gets through

Exit codes: 0 every run completed; 8 some ended in error; 2 usage error; 7 set-up failed.""",
)
@attack_option(TLS_ATTACKS, "every TLS attack")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report directory.")
@click.option("--jobs", type=click.IntRange(min=1, max=16), default=2, show_default=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def probe(attacks: tuple[str, ...], out: Path | None, jobs: int, command: tuple[str, ...]) -> None:
    """Run COMMAND as the victim against every TLS attack and report, cell by cell, what it did.

    COMMAND is any program (put it after --); the lab fills in where bank.lab is (see below), runs it
    once with no attack and once per attack through mitmproxy, and judges each run from the evidence:
    compromised if the attacker read the password or the cookie, or the program got through a forged
    certificate; blocked if its words say which protection refused; error otherwise. The table goes
    in the same report as `mitmlab check --view clients` (docs/tls.md).
    """
    if shutil.which(command[0]) is None:
        raise click.UsageError(f"{shown(command[0])} is not a program on PATH")
    unknown = {p.split("}")[0] for part in command for p in part.split("{")[1:]} - set(PLACEHOLDERS)
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        named = ", ".join(shown(p) for p in sorted(unknown))
        raise click.UsageError(f"unknown placeholders [{named}] in COMMAND; they are {known}")
    command = tuple(_full_path(part) for part in command)
    out = out or default_out()
    writable(out)
    view = Clients((PROBE + shlex.join(command),))
    chosen = attacks or TLS_ATTACKS
    with tempfile.TemporaryDirectory(prefix="mitmlab-probe-") as scratch, reported_errors():
        backend, template = make_backend("local", Path(scratch))
        result = with_progress(
            lambda on_result, on_planned: run_check(
                backend,
                template,
                ("clients",),
                chosen,
                jobs,
                out,
                on_result,
                custom={"clients": view},
                on_planned=on_planned,
            )
        )
    report = build(result)
    write_report(report, out)
    print_summary(report)
    say_where(out)
    if result.errors:
        fail(EXIT_RUN_ERRORS, f"{len(result.errors)} run(s) ended in error; see the report.")


def _full_path(part: str) -> str:
    """`part` by its full path if it names a file or folder here: COMMAND runs elsewhere (each run in
    a folder of its own), where `my_client.py` would name nothing."""
    return str(Path(part).absolute()) if not os.path.isabs(part) and os.path.lexists(part) else part
