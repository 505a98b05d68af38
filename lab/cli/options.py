"""Options that several commands share: the state directory, endpoints, and the protection switches."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lab.channel.protections import PROFILES, PROTECTION_IDS, PROTECTIONS, Protections
from lab.net import WebPorts

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STATE_DIR = "state"


HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
"""One label of a host name as DNS carries it (after IDNA, so `é.lab` passes as `xn--9ca.lab`)."""


def shown(value: str, limit: int = 60) -> str:
    """`value` quoted for a one-line message: escapes for what does not print, and cut if long."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _host_problem(host: str) -> str | None:
    """Why `host` is no host name, IPv4 address or bracketed IPv6 address, or None."""
    if not (host.startswith("[") and host.endswith("]")):
        return _name_problem(host)
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return "brackets hold an IPv6 address, as in [::1]:4433"
    return None


def _name_problem(name: str) -> str | None:
    """Why `name` is no host name or IPv4 address, or None."""
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(name)
        return None
    if not name:
        return "no host"
    if ":" in name:
        return "an IPv6 address goes in brackets, as in [::1]:4433"
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.removesuffix(".").split(".")
    if len(ascii_name) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return "a host name is labels of 1 to 63 letters, digits or hyphens, joined by dots"
    return None


def port_problem(port: str) -> str | None:
    """Why `port` is no TCP port (0 to 65535, in ASCII digits), or None."""
    digits = port.lstrip("0") or "0"  # int() refuses thousands of digits, leading zeros included
    if port.isascii() and port.isdigit() and len(digits) <= 5 and int(digits) <= 65535:
        return None
    return f"the port must be a number from 0 to 65535, not {shown(port)}"


def endpoint(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """Parse HOST:PORT (a click callback): a host name, an IPv4 address or an IPv6 one in brackets,
    then the port; the message says what is wrong and shows the expected form."""
    host, sep, port = value.rpartition(":")
    problem = _host_problem(host) or port_problem(port) if sep else "no :PORT"
    if problem:
        raise click.BadParameter(f"{shown(value)} is not HOST:PORT: {problem} (for example 127.0.0.1:4433)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def host_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A host name or IPv4 address (a click callback), as `endpoint` takes them."""
    problem = _name_problem(value)
    if problem:
        raise click.BadParameter(f"{shown(value)}: {problem}")
    return value


def file_to_write(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A file a command writes once it has done its work (a click callback): its folder must be there
    already, so that a typo fails at once and not after the work."""
    if value is not None and not value.parent.is_dir():
        raise click.BadParameter(f"{shown(str(value))}: there is no folder {shown(str(value.parent))}")
    return value


def web_ports_option(flag: str, default: str | None, help: str) -> Callable[[F], F]:
    """An HTTPS,HTTP pair of ports (`lab.net.WebPorts`); without a default, None when absent."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> WebPorts | None:
        if value is None:
            return None
        https, sep, http = value.partition(",")
        if not sep or port_problem(https) or port_problem(http):
            raise click.BadParameter(f"{shown(value)} is not HTTPS,HTTP (two ports, for example 8443,8880)")
        return WebPorts(int(https), int(http))

    return click.option(
        flag,
        callback=parse,
        metavar="HTTPS,HTTP",
        default=default,
        show_default=default is not None,
        help=help,
    )


def services_option(flag: str, help: str) -> Callable[[F], F]:
    """NAME=PORT, repeatable: a role's services by name (`lab.roles.ready`), as a dict."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, int]:
        services: dict[str, int] = {}
        for value in values:
            name, sep, port = value.partition("=")
            if not sep or not name.isidentifier() or port_problem(port):
                raise click.BadParameter(f"{shown(value)} is not NAME=PORT (for example ssh=2222)")
            services[name] = int(port)
        return services

    return click.option(flag, callback=parse, metavar="NAME=PORT", multiple=True, help=help)


def endpoint_option(flag: str, default: str | None, help: str) -> Callable[[F], F]:
    """A HOST:PORT option; without a default it is optional and None when absent."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
        return None if value is None else endpoint(ctx, param, value)

    return click.option(
        flag,
        callback=parse,
        metavar="HOST:PORT",
        default=default,
        show_default=default is not None,
        help=help,
    )


def attack_option(attacks: tuple[str, ...], default: str) -> Callable[[F], F]:
    """--attack, repeatable, among `attacks`; `default` says what runs without it."""
    return click.option(
        "--attack",
        "attacks",
        type=click.Choice(attacks),
        multiple=True,
        help=f"Only this attack (repeatable). Default: {default}.",
    )


def state_dir_option(f: F) -> F:
    def named(ctx: click.Context, param: click.Parameter, value: str) -> Path:
        """An empty path would be the current directory, which `init --fresh` would clear."""
        if not value:
            source = ctx.get_parameter_source("state_dir")
            given = "MITMLAB_STATE_DIR is empty" if source == click.core.ParameterSource.DEFAULT else "empty"
            raise click.BadParameter(f"{given}: name the state folder (the default is ./{DEFAULT_STATE_DIR})")
        return Path(value)

    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        callback=named,
        default=lambda: os.environ.get("MITMLAB_STATE_DIR", DEFAULT_STATE_DIR),
        show_default="./state, or $MITMLAB_STATE_DIR",
        help="Where the lab keeps its keys, certificates, bank and evidence (made at run time).",
    )(f)


def protection_options(f: F) -> F:
    """--profile NAME plus --<id>/--no-<id> for every protection; see `protections_from`."""
    for protection in reversed(PROTECTIONS):
        doc = f"{protection.doc.split('. ')[0]} ({protection.whose})"
        f = click.option(
            f"--{protection.flag}/--no-{protection.flag}",
            f"switch_{protection.id}",
            default=None,
            help=f"Turn {protection.id} on/off. {doc}.",
        )(f)
    return click.option(
        "--profile",
        type=click.Choice(list(PROFILES)),
        default="recommended",
        show_default=True,
        help="Starting set of protections; switches then turn single ones on or off.",
    )(f)


def protections_from(kwargs: dict[str, Any]) -> Protections:
    """Pop the --profile and switch options from a command's kwargs and build the Protections."""
    base = Protections.profile(kwargs.pop("profile"))
    switches = {pid: kwargs.pop(f"switch_{pid}") for pid in PROTECTION_IDS}
    return base.with_switches({pid: on for pid, on in switches.items() if on is not None})
