"""`mitmlab attacker`: mitmproxy in front of the bank, running one attack addon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from lab.attacks import ATTACK_IDS, ATTACKS
from lab.cli.errors import EXIT_CONNECTION, EXIT_SETUP, fail, reported_errors
from lab.cli.options import endpoint_option, file_to_write, state_dir_option, web_ports_option
from lab.control import ControlServer
from lab.events import EvidenceError
from lab.evidence import follow
from lab.mitm.live_view import LiveViewError
from lab.narrate import sentence, styled_line
from lab.net import WebPorts
from lab.roles.attacker import AttackerError, AttackerRole, CannotListen
from lab.state import StateDir

console = Console(highlight=False)

ATTACK_LIST = "\n".join(f"  {a.id:<15} {a.summary}" for a in ATTACKS.values())


def _settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--set")
        try:
            settings[name] = int(value) if value.lstrip("-").isdigit() else value
        except ValueError:  # more digits than Python turns into a number
            raise click.BadParameter(f"{name}: a number of {len(value)} digits", param_hint="--set") from None
    return settings


@click.command(epilog=f"\b\nAttacks:\n{ATTACK_LIST}")
@click.option(
    "--attack",
    "attack_id",
    type=click.Choice([*ATTACK_IDS, "none"]),
    default="none",
    show_default=True,
    help="The attack to run; none relays untouched.",
)
@endpoint_option("--listen", "127.0.0.1:4434", "Where clients dial the attacker (port 0 picks one).")
@endpoint_option("--upstream", "127.0.0.1:4433", "The real server, behind the attacker.")
@web_ports_option(
    "--web-ports",
    "9443,9880",
    "Where real clients dial the attacker as bank.lab over HTTPS and plain HTTP (docs/tls.md), on the "
    "--listen host; 0 picks a port.",
)
@web_ports_option(
    "--upstream-web-ports",
    "8443,8880",
    "The HTTPS bank's ports on the --upstream host (`mitmlab server` serves 8443 and 8880).",
)
@click.option(
    "--addon",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Run an addon file of your own instead of --attack (see docs/write-your-own-attack.md).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="An option of the attack's addon, e.g. --set lab_bitflip_to=eve (repeatable).",
)
@endpoint_option("--control", None, "Serve the control port here, to switch attacks without a restart.")
@endpoint_option(
    "--web",
    None,
    "Also serve mitmweb's live view here, on loopback (e.g. 127.0.0.1:8081), for the lab's owner only: "
    "the URL it prints carries the lab's token.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=file_to_write,
    help="Write the bound port here once listening.",
)
@state_dir_option
def attacker(
    attack_id: str,
    listen: tuple[str, int],
    upstream: tuple[str, int],
    web_ports: WebPorts,
    upstream_web_ports: WebPorts,
    addon: Path | None,
    settings: tuple[str, ...],
    control: tuple[str, int] | None,
    web: tuple[str, int] | None,
    port_file: Path | None,
    state_dir: Path,
) -> None:
    """Run mitmproxy in reverse mode in front of the bank (the lab channel, and the HTTPS bank) with one
    attack addon from addons/.

    The same addon files run on their own with `mitmdump -s addons/<attack>.py`; see
    docs/write-your-own-attack.md.
    """
    with reported_errors():
        state = StateDir(state_dir).require()
        try:
            chosen: str | Path = addon if addon is not None else attack_id
            role = AttackerRole(
                state, listen, upstream, web_listen=web_ports, web_upstream=upstream_web_ports, web=web
            )
            asyncio.run(_run(role, chosen, _settings(settings), control, port_file))
        except KeyboardInterrupt:
            console.print("stopped.")
        except CannotListen as exc:
            fail(EXIT_CONNECTION, str(exc))
        except (AttackerError, LiveViewError) as exc:
            fail(EXIT_SETUP, str(exc))


async def _run(
    role: AttackerRole,
    attack_id: str | Path,
    settings: dict[str, Any],
    control: tuple[str, int] | None,
    port_file: Path | None,
) -> None:
    state, (host, _), upstream = role.state, role.listen, role.upstream
    port = await role.start()
    try:
        if isinstance(attack_id, Path):
            role.switch_to_file(attack_id, settings)
        else:
            role.switch(None if attack_id == "none" else attack_id, settings)
        tls = role.web_ports()
        lines = [
            f"attacker listening on {host}:{port}, relaying to {upstream[0]}:{upstream[1]}; "
            f"attack: {attack_id}; evidence: {state.evidence_path('attacker')}",
            f"in front of the HTTPS bank: https://bank.lab:{tls.https}/ and http://bank.lab:{tls.http}/ "
            f"on {host}"
            if tls
            else "",
        ]
        if control is not None:
            control_server = ControlServer(role.control_handlers(), secret=state.secret())
            control_port = await control_server.start(*control)
            lines.append(
                f"control port on {control[0]}:{control_port} (requests carry the secret in "
                f"{state.control_secret})"
            )
        if (view := role.live_view_url()) is not None:
            lines.append(f"mitmweb's live view, for your eyes only (the URL holds the lab's token): {view}")
        console.print("\n".join(line for line in lines if line) + "\nCtrl-C stops it.", soft_wrap=True)
        if port_file is not None:
            port_file.write_text(f"{port}\n")
        # Say what the attack does, as it does it.
        async for event in follow(state.evidence_path("attacker"), "attacker"):
            if isinstance(event, EvidenceError):
                console.print(f"[yellow]an evidence line that is no attacker event: {event}[/]")
                continue
            words = sentence(event)
            if words is not None:
                console.print(styled_line(event, words), soft_wrap=True)
    finally:
        await role.stop()
