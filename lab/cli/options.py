"""Options that several commands share: the state directory, endpoints, and the protection switches."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lab.bank.web import WebPorts
from lab.channel.protections import PROFILES, PROTECTION_IDS, PROTECTIONS, Protections

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STATE_DIR = "state"


def endpoint(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """Parse HOST:PORT (a click callback), with a message that shows the expected form."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (for example 127.0.0.1:4433)")
    return host.strip("[]"), int(port)


def web_ports_option(flag: str, default: str | None, help: str) -> Callable[[F], F]:
    """An HTTPS,HTTP pair of ports (`lab.bank.web.WebPorts`); without a default, None when absent."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> WebPorts | None:
        if value is None:
            return None
        https, sep, http = value.partition(",")
        if not sep or not all(p.isdigit() and int(p) <= 65535 for p in (https, http)):
            raise click.BadParameter(f"{value!r} is not HTTPS,HTTP (two ports, for example 8443,8880)")
        return WebPorts(int(https), int(http))

    return click.option(
        flag,
        callback=parse,
        metavar="HTTPS,HTTP",
        default=default,
        show_default=default is not None,
        help=help,
    )


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
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
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
