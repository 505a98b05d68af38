"""The `mitmlab` command."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Final

import click

from lab import __version__

COMMANDS: Final = {
    "attacker": "lab.cli.attacker:attacker",
    "bench": "lab.cli.bench:bench",
    "check": "lab.cli.check:check",
    "client": "lab.cli.roles:client",
    "demo": "lab.cli.check:demo",
    "forward": "lab.cli.check:forward",
    "init": "lab.cli.roles:init",
    "probe": "lab.cli.probe:probe",
    "protections": "lab.cli.protections:protections",
    "report": "lab.cli.check:report",
    "role": "lab.cli.role:role",
    "server": "lab.cli.roles:server",
}
"""Each command and the module it lives in, imported when the command runs (or `--help` lists it): a
role's process then loads its own modules, not every command's (mitmproxy's web tool, the benchmarks,
Playwright), about 0.6 s of CPU less for each of a check's role processes."""


class _Commands(click.Group):
    """click's "lazily loading subcommands" group, over COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, _, name = where.partition(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


HELP = """\
mitm-lab: watch man-in-the-middle attacks work, and watch each protection stop them.

The lab has its own secure channel, built like the HTTPS handshake the seeds describe, in which every
protection (CA trust, hostname, validity, pinning, MAC, sequence numbers, server random, per-direction
keys, transcript, forward secrecy) is a switch. A bank runs over it; an attacker (mitmproxy addons)
sits in the middle; the evidence each role writes decides who won. The same bank also runs over real
TLS, where real clients (curl, Python, openssl, Chromium) meet the certificate attacks, revocation
and sslstrip, and refuse (or accept) in their own words.

\b
Start here:
  mitmlab check                         every attack against every protection: the detection report
  mitmlab demo bit-flip --no-mac        one attack, narrated
  mitmlab check --view clients          real clients against real TLS
  mitmlab probe -- curl -sS --resolve {resolve} --cacert {cafile} {url}
                                        your own client against every TLS attack
  mitmlab server &                      the bank on 127.0.0.1:4433; it says when it is listening
  mitmlab client balance                then: alice logs in and reads her balance
  mitmlab attacker --attack wrong-host &
                                        then: mitmproxy in front of the bank, on 127.0.0.1:4434
  mitmlab client --connect 127.0.0.1:4434 balance
                                        then: refused by hostname (exit 3)
  mitmlab client --connect 127.0.0.1:4434 --no-hostname transfer 100 bob
                                        the same check off: the attacker reads the password
"""


@click.group(
    cls=_Commands,
    help=HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(version=__version__, prog_name="mitm-lab")
def cli() -> None:
    pass


def main() -> None:
    """`mitmlab`. A process that ran mitmproxy's servers ends without the interpreter's shutdown, after
    flushing its output: mitmproxy_rs's threads (its UDP listeners, which `reverse:https` starts too)
    may free Python objects while the interpreter finalizes, and the process then dies of SIGSEGV
    instead of exiting with its own code (seen in about 1 of 6 attackers that failed to load an addon;
    mitmproxy#7409 is of the same kind)."""
    try:
        cli()
    except SystemExit as done:
        attacker = sys.modules.get("lab.roles.attacker")  # imported by the commands that run one
        if attacker is None or not attacker.AttackerRole.started_in_this_process:
            raise
        code = done.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)
