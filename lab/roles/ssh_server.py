"""The server role's SSH part (the SSH stack, docs/ssh.md): the real OpenSSH sshd (`lab.ssh.sshd`),
started beside the bank, and what it saw turned into the server's evidence.

sshd needs root (password login needs the customer in a shadow file, which the lab writes only inside a
private mount namespace). Where it cannot start, the role goes on without it and says why to whoever
asks (`ssh_ready`): an SSH run is then `not-run-here` where this machine does not allow sshd (not root,
OpenSSH's server not installed), an `error` with sshd's own words otherwise; every other run goes on.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from lab import events
from lab.clients.ssh import REPOSITORY
from lab.evidence import EvidenceLog
from lab.net import Address, free_port
from lab.ssh.sshd import LoginAccepted, LoginFailed, MissingProgramError, NeedsRootError, Sshd, SshdError
from lab.state import StateDir


class SshServer:
    def __init__(self, state: StateDir, evidence: EvidenceLog, folder: Path) -> None:
        self.state = state
        self.evidence = evidence
        self.folder = folder
        """Where sshd's config, log and the customer's home are made (inside the role's own folder)."""
        self.sshd: Sshd | None = None
        self.unavailable: str | None = "sshd has not been started"
        self.not_here = False
        """Whether this machine does not allow sshd (rather than sshd failing)."""
        self._commands_taken = 0

    async def start(self, host: str, port: int) -> int | None:
        """sshd listening on `host`:`port` (0: a free one); its port, or None (and why in
        `unavailable`) where it cannot start here."""
        sshd = Sshd(
            self.folder,
            self.state.ssh_keys(),
            Address(host, port or free_port(host)),
            self.state.client_password(),
        )
        try:
            await asyncio.to_thread(sshd.start)
        except SshdError as exc:
            self.unavailable = f"the server's sshd cannot start here: {exc}"
            self.not_here = isinstance(exc, NeedsRootError | MissingProgramError)
            return None
        self.sshd, self.unavailable = sshd, None
        if shutil.which("git"):  # the `git` configuration's repository; without git its runs are not run
            work = self.folder.parent / "sshd-repository"
            shutil.rmtree(work, ignore_errors=True)
            await asyncio.to_thread(sshd.seed_repository, REPOSITORY, work)
        self.take()  # its start-up lines are no run's
        return sshd.listen.port

    def take(self) -> None:
        """What sshd logged and the customer's shell noted since the last time, as evidence."""
        if self.sshd is None:
            return
        for record in self.sshd.new_records():
            if isinstance(record, LoginAccepted | LoginFailed):
                self.evidence.record(
                    events.SshLogin(
                        user=record.user,
                        method=record.method,
                        accepted=isinstance(record, LoginAccepted),
                        key=record.key,
                        peer=str(record.peer),
                    )
                )
        commands = self.sshd.commands()
        for command in commands[self._commands_taken :]:
            self.evidence.record(events.SshCommandRan(user=self.sshd.customer, command=command))
        self._commands_taken = len(commands)

    def reset(self) -> None:
        """What sshd saw before this point belongs to no run."""
        self.take()

    async def stop(self) -> None:
        if self.sshd is not None:
            await asyncio.to_thread(self.sshd.stop)
            self.sshd = None

    def status(self) -> dict[str, Any]:
        """Whether sshd serves; where not, why, and whether it is this machine that does not allow it."""
        return {"ready": self.unavailable is None, "why": self.unavailable, "not_here": self.not_here}
