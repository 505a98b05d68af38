"""`mitmlab bench ssh`: what the SSH man in the middle costs a session, and what the ssh view costs the
check.

Sessions: the real `ssh` (the `tofu` configuration: first contact, `accept-new`, the password through
SSH_ASKPASS; each run has a fresh known_hosts) runs `COMMAND` against the real sshd directly, and
through the attacker role's SSH port (`SshPart`) answering as `host-key-swap` does (the attacker's own
plain host key), which reads the password, logs in to the same sshd with it and relays the session. The
two paths alternate (which one goes first alternates too), N sessions each, and each path reports its
median and 90th percentile.

Twice over, interleaved: with OpenSSH's default key exchange, and with curve25519-sha256 forced. The
default comparison flatters the attacker: OpenSSH 9.2 picks sntrup761x25519-sha512 (post-quantum, more
costly) with the real sshd, but asyncssh offers no sntrup761, so through the attacker the client's leg
falls back to curve25519-sha256, and the attacker's own leg to sshd (asyncssh as the client) starts
with curve25519-sha256 too. With curve25519-sha256 forced on the client, all three legs run the same
key exchange, and the ratio is the relay's own cost. Before the timed sessions, one `ssh -v` per path
and mode reads the key exchange the client's leg agreed on: the forced mode must show curve25519-sha256
on both paths, or the bench says so and stops.

The check: `mitmlab check` run as a user runs it (`python -m lab check`), its duration as its own
report.json times it (`summary.duration_s`, the roles' start-up included).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from lab import events
from lab.bench.measure import Result
from lab.clients.ssh import COMMAND, SSH_CLIENTS, Scratch, SshClient, SshRun, run_ssh
from lab.mitm.ssh import SshIdentity, SshPart
from lab.net import Address, free_port
from lab.ssh.keys import SshKeys
from lab.ssh.sshd import Sshd
from lab.state import StateDir

LOOPBACK: Final = "127.0.0.1"
CLIENT: Final = SSH_CLIENTS["tofu"]
"""The configuration that logs in through the host-key-swap relay (a pinned key would refuse it), so
the same one runs both paths."""
ATTACK: Final = "host-key-swap"
FORCED_KEX: Final = "curve25519-sha256"
EXPECTED_OUTPUT: Final = COMMAND.removeprefix("echo ") + "\n"
"""What `COMMAND` prints on the real server: a session that printed anything else did not run it."""
_KEX_SAID: Final = re.compile(r"kex: algorithm: (\S+)")
"""`ssh -v`'s line naming the key exchange the client and its peer agreed on."""
CHECK_TIMEOUT: Final = 1800.0


class SshBenchError(Exception):
    """A session did not log in and run the command, a forced key exchange was not the one agreed on,
    or a check wrote no report: the numbers would not measure what they name."""


@dataclass(frozen=True)
class Mode:
    """How the client is told to agree on a key exchange."""

    label: str
    """As the result rows name it."""
    options: tuple[str, ...]
    """ssh's options for it."""
    forced: str | None = None
    """The key exchange both paths must agree on, when forced."""


MODES: Final = (
    Mode("default key exchange", ()),
    Mode(f"{FORCED_KEX} forced", ("-o", f"KexAlgorithms={FORCED_KEX}"), FORCED_KEX),
)
PATHS: Final = ("direct", "through the attacker")


@dataclass(frozen=True)
class TunedClient(SshClient):
    """`CLIENT` with options of the bench's added to its ssh command line (run_ssh takes no options; its
    configurations are the view's columns)."""

    extra: tuple[str, ...] = ()

    @classmethod
    def of(cls, base: SshClient, extra: tuple[str, ...]) -> TunedClient:
        return cls(**{f.name: getattr(base, f.name) for f in fields(SshClient)}, extra=extra)

    def ssh(self, scratch: Scratch) -> list[str]:
        return [*super().ssh(scratch), *self.extra]


def p90(values: list[float]) -> float:
    """The 90th percentile, between the data points (the largest of fewer than two)."""
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def agreed_kex(run: SshRun) -> str | None:
    """The key exchange `ssh -v` said it agreed on, None if it said none."""
    found = _KEX_SAID.search(run.stderr)
    return found[1] if found else None


class SshSessionBench:
    """`sessions` sessions per path and mode, against a real sshd made in `folder`, with `state`'s SSH
    keys and the customer's password. `notes` says, after `run`, what each path agreed on."""

    def __init__(self, state: StateDir, folder: Path, sessions: int) -> None:
        self.state = state
        self.folder = folder
        self.sessions = sessions
        self.notes: list[str] = []
        self.seen: list[events.AttackerEvent] = []
        """What the attacker recorded: a `Read` of the password per session relayed."""

    @property
    def steps(self) -> int:
        return len(MODES) * (self.sessions + 1)

    async def run(self, tick: Callable[[], None]) -> list[Result]:
        keys, password = self.state.ssh_keys(), self.state.client_password()
        sshd = Sshd(self.folder, keys, Address(LOOPBACK, free_port()), password)
        await asyncio.to_thread(sshd.start)
        attacker = SshPart((LOOPBACK, 0), sshd.listen, keys, self.seen.append, _host_key_swap, lambda: ATTACK)
        try:
            via = await attacker.start()
            ports = {"direct": sshd.listen.port, "through the attacker": via}
            times: dict[tuple[str, str], list[float]] = {
                (mode.label, path): [] for mode in MODES for path in PATHS
            }
            for mode in MODES:
                await self._agreed(mode, keys, password, ports)
                tick()
            for number in range(self.sessions):
                for mode in MODES:
                    client = TunedClient.of(CLIENT, mode.options)
                    for path in PATHS if number % 2 == 0 else PATHS[::-1]:
                        run = await run_ssh(client, keys, password, LOOPBACK, ports[path])
                        _require_session(run, path)
                        times[mode.label, path].append(run.duration_ms)
                    tick()
        finally:
            await attacker.stop()
            await asyncio.to_thread(sshd.stop)
        return [*self._results(times)]

    async def _agreed(self, mode: Mode, keys: SshKeys, password: str, ports: dict[str, int]) -> None:
        """One untimed `ssh -v` per path: which key exchange the client's leg agreed on."""
        client = TunedClient.of(CLIENT, (*mode.options, "-v"))
        said = {}
        for path in PATHS:
            run = await run_ssh(client, keys, password, LOOPBACK, ports[path])
            _require_session(run, path)
            said[path] = agreed_kex(run)
        if mode.forced is not None and set(said.values()) != {mode.forced}:
            raise SshBenchError(f"{mode.forced} was forced, but the clients agreed on {said}")
        self.notes.append(
            f"{mode.label}: the client agreed on {said['direct']} with sshd and on "
            f"{said['through the attacker']} with the attacker"
        )

    def _results(self, times: dict[tuple[str, str], list[float]]) -> list[Result]:
        results: list[Result] = []
        for mode in MODES:
            direct, through = times[mode.label, "direct"], times[mode.label, "through the attacker"]
            median = f"session, direct, {mode.label} (median)"
            tail = f"session, direct, {mode.label} (p90)"
            results += [
                Result(median, statistics.median(direct), "ms"),
                Result(tail, p90(direct), "ms"),
                Result(
                    f"session, through the attacker, {mode.label} (median)",
                    statistics.median(through),
                    "ms",
                    median,
                ),
                Result(f"session, through the attacker, {mode.label} (p90)", p90(through), "ms", tail),
            ]
        relayed = len(MODES) * (self.sessions + 1)
        read = sum(isinstance(e, events.Read) and e.secret == "password" for e in self.seen)
        return [
            *results,
            Result("sessions through the attacker", relayed, ""),
            Result("passwords the attacker read", read, ""),
        ]


def _host_key_swap(keys: SshKeys) -> SshIdentity:
    """What addons/host_key_swap.py answers SSH with: the attacker's own plain host key."""
    return SshIdentity(keys.private(keys.attacker_key))


def _require_session(run: SshRun, path: str) -> None:
    if run.exit_code != 0 or run.stdout != EXPECTED_OUTPUT:
        said = " / ".join(line for line in run.words if not line.startswith("debug")) or "nothing"
        raise SshBenchError(f"a session {path} did not run the command (exit {run.exit_code}): {said}")


@dataclass(frozen=True)
class CheckTimed:
    duration_s: float
    """As the check's report.json times it."""
    runs: int
    errors: int
    not_run: int
    """Runs not run here (a program missing, no root)."""


def timed_check(views: tuple[str, ...], *, capture: bool) -> CheckTimed:
    """`python -m lab check --view ...` in a process of its own, into a scratch folder, as timed by its
    report."""
    with tempfile.TemporaryDirectory(prefix="mitmlab-bench-") as scratch:
        out = Path(scratch) / "report"
        argv = [sys.executable, "-m", "lab", "check", *(a for v in views for a in ("--view", v))]
        argv += ["--out", str(out), *(() if capture else ("--no-capture",))]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise SshBenchError(
                f"the check of {', '.join(views)} did not end within {exc.timeout:g} s"
            ) from None
        try:
            summary = json.loads((out / "report.json").read_text())["summary"]
        except FileNotFoundError:
            words = (done.stderr.strip() or done.stdout.strip())[-2000:]
            raise SshBenchError(f"the check ended ({done.returncode}) without a report: {words}") from None
    return CheckTimed(summary["duration_s"], summary["runs"], summary["error"], summary["not-run-here"])
