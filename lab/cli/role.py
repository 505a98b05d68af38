"""`mitmlab role NAME`: one role, long-lived, driven only through its control port.

This is what `mitmlab check` starts for each role: as local processes, or as the services of the
compose file. Between scenarios the runner reconfigures the roles instead of restarting them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lab.channel.protections import RECOMMENDED
from lab.cli.errors import EXIT_CONNECTION, EXIT_SETUP, fail, reported_errors
from lab.cli.options import endpoint_option, services_option, state_dir_option, web_ports_option
from lab.control import ControlError, ControlServer, Handler, Refused
from lab.events import ControlRefused
from lab.evidence import evidence_lines
from lab.net import Address, WebPorts
from lab.roles.lanes import LanePorts, Lanes, LanesFailed
from lab.state import StateDir

if TYPE_CHECKING:  # each role's own modules are imported where that role starts: a role loads its own
    from lab.clients.browser import Browsers
    from lab.roles.attacker import AttackerRole
    from lab.roles.server import BankServer


@click.command()
@click.argument("name", type=click.Choice(["server", "attacker", "client"]))
@endpoint_option("--control", "127.0.0.1:0", "The control port (JSON lines).")
@endpoint_option("--listen", "127.0.0.1:0", "The server's or attacker's service address.")
@endpoint_option("--upstream", "127.0.0.1:4433", "The attacker's upstream: the real server.")
@web_ports_option(
    "--web-ports",
    "0,0",
    "The HTTPS bank's HTTPS and plain-HTTP ports (the server's), or the attacker's in front of them, on "
    "the --listen host; 0 picks a free port.",
)
@web_ports_option(
    "--upstream-web-ports",
    None,
    "The attacker's upstream HTTPS bank ports, on the --upstream host; without it the attacker has no "
    "real-TLS listeners.",
)
@services_option(
    "--service",
    "A service of the role's own by name, on the --listen host (the SSH stack's: ssh=PORT, the server's "
    "sshd or the attacker's SSH listener; 0 picks a free port). Without it, none.",
)
@services_option(
    "--upstream-service",
    "The attacker's upstream for a service, on the --upstream host (ssh=PORT: the real sshd).",
)
@endpoint_option(
    "--transparent",
    None,
    "The attacker's transparent listener (mitmproxy's transparent mode), where ARP positioning "
    "redirects the server's ports (docs/arp.md); without it, none.",
)
@endpoint_option(
    "--web",
    None,
    "The attacker's mitmweb live view, on loopback, guarded by the lab's token (with --lanes: the first "
    "lane's); it prints the URL that opens it.",
)
@click.option(
    "--web-exposed",
    is_flag=True,
    help="Let --web listen beyond loopback, where the network around it is the lab's own (the compose "
    "lab's live service forwards to it); the token still guards it.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Write {"control": PORT, "service": PORT, "https": PORT, "http": PORT, "transparent": PORT} '
    'here once listening, and each --service by name (with --lanes: {"lanes": N}).',
)
@click.option(
    "--lanes",
    type=click.IntRange(min=1, max=16),
    help="Run this many lanes of the role, lane i on each port + i - 1, each with its own copy of "
    "--state-dir (made in --lanes-dir); a lane whose role dies is started again. For containers.",
)
@click.option(
    "--lanes-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/tmp/mitmlab-lanes",
    show_default=True,
    help="Where --lanes keeps each lane's state directory.",
)
@state_dir_option
def role(
    name: str,
    control: tuple[str, int],
    listen: tuple[str, int],
    upstream: tuple[str, int],
    web_ports: WebPorts,
    upstream_web_ports: WebPorts | None,
    service: dict[str, int],
    upstream_service: dict[str, int],
    transparent: tuple[str, int] | None,
    web: tuple[str, int] | None,
    web_exposed: bool,
    ready_file: Path | None,
    lanes: int | None,
    lanes_dir: Path,
    state_dir: Path,
) -> None:
    """Run the server, attacker or client as a long-lived role for `mitmlab check`."""
    with reported_errors():
        state = StateDir(state_dir).require()
        ports = LanePorts(
            control, listen, upstream, web_ports, upstream_web_ports, transparent, service, upstream_service
        )
        if web is not None and not web_exposed:
            from lab.mitm.live_view import LiveViewError, require_loopback

            try:
                require_loopback(web[0])
            except LiveViewError as exc:
                fail(EXIT_SETUP, f"{exc} (--web-exposed: only where the network around it is the lab's own)")
        try:
            if lanes is not None:
                _own_private_directory(lanes_dir)
                supervisor = Lanes(name, lanes, state, lanes_dir, ports, web, web_exposed=web_exposed)
                asyncio.run(supervisor.run(ready_file))
            else:
                asyncio.run(_serve(name, state, ports, web, ready_file, web_exposed=web_exposed))
        except KeyboardInterrupt:
            pass
        except LanesFailed as exc:
            fail(EXIT_CONNECTION, str(exc))
        except OSError as exc:
            fail(EXIT_CONNECTION, f"the {name} role cannot start: {exc}")


def _own_private_directory(path: Path) -> None:
    """Make `path` (mode 0700) or accept it only if it is ours and nobody else may write to it: the lanes'
    state directories hold the lab's secret and keys."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        fail(EXIT_SETUP, f"{path} belongs to someone else or others may write to it: choose --lanes-dir")


async def _serve(
    name: str,
    state: StateDir,
    ports: LanePorts,
    web: tuple[str, int] | None,
    ready_file: Path | None,
    *,
    web_exposed: bool = False,
) -> None:
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # PID 1 in a container has no default action
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    service_port: int | None = None
    web_ports: WebPorts | None = None
    transparent_port: int | None = None
    own: dict[str, int | None] = {}
    """Services by name beyond the lab channel's and the HTTPS bank's; None: it could not start."""
    handlers: dict[str, Handler]
    server: BankServer | None = None
    attacker: AttackerRole | None = None
    browsers: Browsers | None = None
    if name == "server":
        from lab.roles.server import BankServer

        server = BankServer(state, RECOMMENDED)
        service_port = await server.start(*ports.listen)
        web_ports = await server.start_web(ports.listen[0], ports.web.https, ports.web.http)
        if "ssh" in ports.services:
            own["ssh"] = await server.start_ssh(ports.listen[0], ports.services["ssh"])
        serving = asyncio.create_task(server.serve_forever())
        handlers = server.control_handlers()
    elif name == "attacker":
        from lab.roles.attacker import AttackerRole, CannotListen

        attacker = AttackerRole(
            state,
            ports.listen,
            ports.upstream,
            web_listen=ports.web if ports.upstream_web else None,
            web_upstream=ports.upstream_web,
            transparent=ports.transparent,
            ssh_listen=(ports.listen[0], ports.services["ssh"]) if "ssh" in ports.services else None,
            ssh_upstream=(
                Address(ports.upstream[0], ports.upstream_services["ssh"])
                if "ssh" in ports.upstream_services
                else None
            ),
            web=web,
            web_exposed=web_exposed,
        )
        try:
            service_port = await attacker.start()
        except CannotListen as exc:
            fail(EXIT_CONNECTION, f"the attacker role cannot start: {exc}")
        if (view := attacker.live_view_url()) is not None:
            # stdout: the owner's terminal, or the container's log, which only Docker's users read
            print(f"mitmweb's live view, for the lab's owner only: {view}", flush=True)
        web_ports = attacker.web_ports()
        own["ssh"] = attacker.ssh_port()
        transparent_port = attacker.transparent_port()
        handlers = attacker.control_handlers()
    else:
        from lab.clients.browser import Browsers
        from lab.roles import client as client_role

        browsers = Browsers()
        handlers = client_role.control_handlers(state, browsers)

    async def shutdown(request: dict[str, Any]) -> dict[str, Any]:
        stop.set()
        return {}

    async def evidence(request: dict[str, Any]) -> dict[str, Any]:
        """What this role recorded; with "take": true it is also cleared (the runner keeps it)."""
        take = request.get("take", False)
        if not isinstance(take, bool):
            raise ControlError('"take" is true or false')
        path = state.evidence_path(name)
        lines = evidence_lines(path)  # as written: the runner validates them, and keeps them even if bad
        if take:
            path.unlink(missing_ok=True)
        return {"lines": lines}

    def refused(event: Refused) -> None:
        state.evidence(name).record(event)
        if isinstance(event, ControlRefused):
            words = f"a control request without the lab's secret from {event.peer}: {event.cmd!r}"
        else:
            hosts = ", ".join(event.peers)
            words = f"{event.count} more control requests without the lab's secret from {hosts}"
        print(f"refused {words}", file=sys.stderr)

    control_server = ControlServer(
        {**handlers, "evidence": evidence, "shutdown": shutdown}, secret=state.secret(), on_refused=refused
    )
    control_port = await control_server.start(*ports.control)
    if ready_file is not None:
        ready: dict[str, int | None] = {"control": control_port, "service": service_port}
        if web_ports is not None:
            ready.update(https=web_ports.https, http=web_ports.http)
        ready.update({name: port for name, port in own.items() if port is not None})
        if transparent_port is not None:
            ready.update(transparent=transparent_port)
        ready_file.write_text(json.dumps(ready) + "\n")
    try:
        await stop.wait()
    finally:
        await control_server.stop()
        if server is not None:
            serving.cancel()
            await server.stop()
        if attacker is not None:
            await attacker.stop()
        if browsers is not None:
            await browsers.close()
