"""`mitmlab protections`: each protection, whose setting it is, what refuses when it fires, its seed."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from lab.channel.errors import Refusal
from lab.channel.protections import PROTECTIONS
from lab.protection import CLIENT_SETTING, Protection
from lab.stacks import LINK_LAYER, PROTECTIONS_BY_ID, STACKS

MARKDOWN_BEGIN = "<!-- mitmlab protections --markdown: begin -->"
MARKDOWN_END = "<!-- mitmlab protections --markdown: end -->"


def refusals(protection: Protection) -> list[str]:
    """The typed errors that name this protection when it refuses."""
    return [error.__name__ for error in Refusal.__subclasses__() if error.protection == protection.id]


def markdown_table() -> str:
    """The table of docs/protections.md, made from the definitions (a test keeps the doc equal to it)."""
    rows = [
        MARKDOWN_BEGIN,
        "| protection | when on | refuses with | whose | seed |",
        "|---|---|---|---|---|",
        *(
            f"| `{p.id}` | {p.when_on} | {', '.join(f'`{r}`' for r in refusals(p))} | {p.whose} | {p.seed} |"
            for p in PROTECTIONS
        ),
        MARKDOWN_END,
    ]
    return "\n".join(rows) + "\n"


@click.command()
@click.option("--markdown", is_flag=True, help="Print the table of docs/protections.md instead.")
def protections(markdown: bool) -> None:
    """List the protections: what each does, the typed error it refuses with, whose setting it is.

    The lab channel's are switches: --ID / --no-ID (dashes for underscores) on demo, client and
    server. Then the real clients' own settings, which the report's columns also show (crl, hsts,
    sarp): the clients view sets them per client configuration (docs/tls.md), --static-arp sets
    static_arp (docs/arp.md).
    """
    if markdown:
        click.echo(markdown_table(), nl=False)
        return
    console = Console(highlight=False)
    table = Table(title="The lab channel's switches")
    table.add_column("protection", no_wrap=True)
    table.add_column("when on")
    table.add_column("refuses with", no_wrap=True)
    table.add_column("whose")
    table.add_column("seed")
    for p in PROTECTIONS:
        table.add_row(p.id, p.when_on, ", ".join(refusals(p)), p.whose, p.seed)
    console.print(table)
    settings = Table(title="The real clients' own settings")
    settings.add_column("protection", no_wrap=True)
    settings.add_column("column", no_wrap=True)
    settings.add_column("when on")
    settings.add_column("where")
    settings.add_column("seed")
    for p in PROTECTIONS_BY_ID.values():
        if p.whose == CLIENT_SETTING:
            on = [stack.id for stack in STACKS.values() if p.id in stack.protections]
            where = ", ".join(on) if p.id not in LINK_LAYER else "the link layer (ARP), every stack"
            settings.add_row(p.id, p.short, p.when_on, where, p.seed)
    console.print(settings)
