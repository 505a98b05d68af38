"""`mitmlab role NAME`: one role, long-lived, driven only through its control port.

This is what `mitmlab check` starts for each role: as local processes, or as the services of the
compose file. Between scenarios the runner reconfigures the roles instead of restarting them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from lab.channel.protections import RECOMMENDED
from lab.cli.errors import EXIT_CONNECTION, fail, reported_errors
from lab.cli.options import endpoint_option, state_dir_option
from lab.control import ControlServer, Handler
from lab.roles import client as client_role
from lab.roles.attacker import AttackerRole, CannotListen
from lab.roles.server import BankServer
from lab.state import StateDir


@click.command()
@click.argument("name", type=click.Choice(["server", "attacker", "client"]))
@endpoint_option("--control", "127.0.0.1:0", "The control port (JSON lines).")
@endpoint_option("--listen", "127.0.0.1:0", "The server's or attacker's service address.")
@endpoint_option("--upstream", "127.0.0.1:4433", "The attacker's upstream: the real server.")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Write {"control": PORT, "service": PORT} here once listening.',
)
@state_dir_option
def role(
    name: str,
    control: tuple[str, int],
    listen: tuple[str, int],
    upstream: tuple[str, int],
    ready_file: Path | None,
    state_dir: Path,
) -> None:
    """Run the server, attacker or client as a long-lived role for `mitmlab check`."""
    with reported_errors():
        state = StateDir(state_dir).require()
        try:
            asyncio.run(_serve(name, state, control, listen, upstream, ready_file))
        except KeyboardInterrupt:
            pass
        except (CannotListen, OSError) as exc:
            fail(EXIT_CONNECTION, f"the {name} role cannot start: {exc}")


async def _serve(
    name: str,
    state: StateDir,
    control: tuple[str, int],
    listen: tuple[str, int],
    upstream: tuple[str, int],
    ready_file: Path | None,
) -> None:
    stop = asyncio.Event()
    service_port: int | None = None
    handlers: dict[str, Handler]
    server: BankServer | None = None
    attacker: AttackerRole | None = None
    if name == "server":
        server = BankServer(state, RECOMMENDED)
        service_port = await server.start(*listen)
        serving = asyncio.create_task(server.serve_forever())
        handlers = server.control_handlers()
    elif name == "attacker":
        attacker = AttackerRole(state, listen, upstream)
        service_port = await attacker.start()
        handlers = attacker.control_handlers()
    else:
        handlers = client_role.control_handlers(state)

    async def shutdown(request: dict[str, Any]) -> dict[str, Any]:
        stop.set()
        return {}

    control_server = ControlServer({**handlers, "shutdown": shutdown})
    control_port = await control_server.start(*control)
    if ready_file is not None:
        ready_file.write_text(json.dumps({"control": control_port, "service": service_port}) + "\n")
    try:
        await stop.wait()
    finally:
        await control_server.stop()
        if server is not None:
            serving.cancel()
            await server.stop()
        if attacker is not None:
            await attacker.stop()
