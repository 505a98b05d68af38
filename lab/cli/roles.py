"""The roles as commands for people: init, server, client (the attacker has its own module)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from lab.bank import protocol
from lab.cli.errors import EXIT_CODES_HELP, EXIT_CONNECTION, EXIT_SETUP, fail, reported_errors
from lab.cli.options import (
    endpoint_option,
    file_to_write,
    host_name,
    protection_options,
    protections_from,
    shown,
    state_dir_option,
    web_ports_option,
)
from lab.net import WebPorts
from lab.roles.client import Command, SessionResult, run_session
from lab.roles.server import run_server
from lab.state import SERVER_NAME, StateDir

console = Console(highlight=False)


@click.command(
    epilog="""\b
Exit codes: 0 done; 2 usage error; 7 the folder is not a lab state directory, or one with a part missing
or damaged (the message names it), or cannot be written."""
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Replace an existing state directory: new keys, certificates, passwords and control secret "
    "(the ledger starts again). Only in a folder the lab made, and only what the lab made in it.",
)
@state_dir_option
def init(fresh: bool, state_dir: Path) -> None:
    """Make the state directory: CA, certificates (the attacker's too), bank, demo accounts. On a state
    directory that is already there: check it, and make its files private (0600, in 0700 folders)."""
    with reported_errors():
        state = StateDir(state_dir)
        kept = state.clear() if fresh else []
        if state.lab_entries():
            state.check()
            state.make_private()
            console.print(
                f"{state_dir} is already a lab state directory, checked; nothing to do.", markup=False
            )
            return
        state.create(datetime.datetime.now(datetime.UTC))
    console.print(
        f"Created {state_dir}: lab CA, {SERVER_NAME} certificate, attacker certificates, bank.", markup=False
    )
    if kept:
        console.print(f"Kept what the lab did not make there: {', '.join(kept)}.", markup=False)


class PortFileUnwritable(Exception):
    """--port-file could not be written (told apart from a port the server cannot listen on)."""


@click.command(epilog=EXIT_CODES_HELP)
@endpoint_option("--listen", "127.0.0.1:4433", "Address to listen on (port 0 picks a free port).")
@web_ports_option(
    "--web-ports",
    "8443,8880",
    "The HTTPS bank's ports on the --listen host (docs/tls.md): HTTPS, and the plain-HTTP front door.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=file_to_write,
    help="Write the bound port here once listening (for scripts: no sleeping).",
)
@state_dir_option
@protection_options
def server(
    listen: tuple[str, int], web_ports: WebPorts, port_file: Path | None, state_dir: Path, **switches: Any
) -> None:
    """Run the bank behind the lab channel, and over real HTTPS. Creates the state directory if it is
    missing."""
    protections = protections_from(switches)
    with reported_errors():
        state = StateDir(state_dir).ensure()

        def ready(port: int, web: WebPorts) -> None:
            if port_file is not None:
                try:
                    port_file.write_text(f"{port}\n")
                except OSError as exc:
                    why = f"cannot write the port to {port_file}: {exc.strerror}"
                    raise PortFileUnwritable(why) from None
            console.print(
                f"{SERVER_NAME} listening on {listen[0]}:{port} with {protections.describe()}; over HTTPS "
                f"on {web.https}, its plain-HTTP front door on {web.http}. Ctrl-C stops it.",
                markup=False,
            )

        try:
            asyncio.run(run_server(state, listen[0], listen[1], protections, web=web_ports, on_ready=ready))
        except KeyboardInterrupt:
            console.print("stopped.")
        except PortFileUnwritable as exc:
            fail(EXIT_SETUP, str(exc))
        except OSError as exc:
            fail(
                EXIT_CONNECTION,
                f"cannot listen on {listen[0]} (ports {listen[1]}, {web_ports}): {exc.strerror}",
            )


@click.group(epilog=EXIT_CODES_HELP)
@endpoint_option(
    "--connect", "127.0.0.1:4433", "Where to dial: the server, or the attacker standing in front of it."
)
@click.option(
    "--server-name",
    default=SERVER_NAME,
    show_default=True,
    callback=host_name,
    help="The name the client expects the certificate to carry.",
)
@state_dir_option
@protection_options
@click.pass_context
def client(
    ctx: click.Context, /, connect: tuple[str, int], server_name: str, state_dir: Path, **switches: Any
) -> None:
    """Log in to the bank as alice, then run a command. Exits non-zero when anything refuses."""
    ctx.obj = {
        "connect": connect,
        "server_name": server_name,
        "state": StateDir(state_dir),
        "protections": protections_from(switches),
    }


def _run_client(obj: dict[str, Any], commands: list[Command]) -> SessionResult:
    host, port = obj["connect"]
    with reported_errors():
        state = obj["state"].require()
        return asyncio.run(
            run_session(state, host, port, obj["protections"], commands, server_name=obj["server_name"])
        )


@client.command()
@click.pass_obj
def balance(obj: dict[str, Any]) -> None:
    """Print alice's balance."""
    result = _run_client(obj, [Command("balance")])
    reply = result.replies[-1]
    console.print(f"balance: {reply.get('balance')}  (suite {result.handshake.suite})", markup=False)


def _account_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """TO as the bank's protocol takes it (a click callback)."""
    problem = protocol.name_problem(value)
    if problem:
        raise click.BadParameter(f"{shown(value)}: {problem}")
    return value


@client.command()
@click.argument("amount", type=click.IntRange(min=1))
@click.argument("to", callback=_account_name)
@click.pass_obj
def transfer(obj: dict[str, Any], amount: int, to: str) -> None:
    """Transfer AMOUNT from alice to the account TO (bob, eve)."""
    result = _run_client(obj, [Command("transfer", to=to, amount=amount)])
    reply = result.replies[-1]
    console.print(
        f"transfer #{reply.get('transfer')} done: {amount} to {to}; balance {reply.get('balance')}  "
        f"(suite {result.handshake.suite})",
        markup=False,
    )
