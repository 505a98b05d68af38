"""ssh: the SSH stack (docs/ssh.md), every OpenSSH client configuration against every SSH attack, in
OpenSSH's own words: the clients view's table, for the configurations of `lab.clients.ssh`.

A configuration's run with no attack is its baseline: one that fails with nobody in the way (strict
checking with no key known fails against the real server too) is an `error` in its whole column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final

from lab import events
from lab.checker.views.clients import Clients
from lab.stacks import STACKS, Client
from lab.stacks.ssh import SSH

if TYPE_CHECKING:
    from lab.checker.runner import RunResult


class SshClients(Clients):
    name: ClassVar[str] = "ssh"
    order: ClassVar[int] = 50
    stack: ClassVar[str] = SSH
    summary: ClassVar[str] = (
        "SSH: each OpenSSH client configuration against each SSH attack, in its own words"
    )
    catalog: ClassVar[Mapping[str, Client]] = STACKS[SSH].clients

    @property
    def programs(self) -> tuple[str, ...]:
        """OpenSSH's server, which the server role runs, and what the configurations run."""
        return ("sshd", *super().programs)

    @staticmethod
    def words(run: RunResult) -> str | None:
        sessions = [e for e in run.events.get("client", []) if isinstance(e, events.SshSession)]
        return sessions[-1].words if sessions else None


VIEW: Final = SshClients()
