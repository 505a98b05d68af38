"""SSH (docs/ssh.md; seed 002 §三): the real OpenSSH, its sshd in the server role and its `ssh` as the
victim, an SSH man in the middle in the attacker role.

SSH has no CA by default: the client remembers the server's host key on first contact (known_hosts) and
refuses a changed one. A run: every role reset, the attacker's attack (an addon offering the SSH part a
host identity of its own, `addons/host_key_swap.py` and `addons/rogue_host_ca.py`; or none, or
`eavesdrop`: the SSH part passes the bytes untouched and keeps them), then the client configuration
(`lab.clients.ssh`) runs the real `ssh` to bank.lab's SSH port, which is the attacker's, with its
password or its key, asking the server to run a command; then the attacker and the server wait until
idle and sshd's log and the commands that ran as the customer are the server's evidence. Through ARP
(docs/arp.md) the client dials sshd's own address, and the attacker redirects sshd's port to its SSH part.

A run's verdict, from what the three roles recorded and nothing else. Breakages:

- `password_read`: the attacker read the customer's real password (compared with the one the checker
  holds);
- `command_run_by_the_attacker`: the relay logged in to the real sshd as the customer and a command ran
  there as the customer (sshd's own account, and the customer's shell's);
- `secret_in_capture`: the real password appears in the bytes a passive attacker kept.

`blocked`: the client refused the attacker's host key, or refused to send its password to it (the
protection is the one its configuration holds: `pinning` for the real key in known_hosts, `ca_trust`
for an `@cert-authority` line; its own words are the evidence); `client_auth` when the client logged in
by its key and the real server refused the relay's replay of its signature, so the command the attacker
read never ran; `encryption` when a passive attacker kept only SSH's encrypted packets. A run without
an attack is never `blocked`: a client that does not get through then is an `error`, and the view shows
it in its whole column. Through ARP, the link layer's rule comes first (`lab.verdict.not_on_the_path`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from lab import events
from lab.channel.protections import BY_ID, NONE
from lab.clients.ssh import SSH_CLIENTS
from lab.control import ControlError
from lab.net import Address
from lab.protection import CLIENT_SETTING, Protection
from lab.stacks import ARP, CannotPlay, Client, LaneRun, NotRunHere
from lab.stacks.scenario import Scenario
from lab.verdict import Breakage, GroundTruth, RunEvidence, Verdict, first_rules, not_run_here

SSH: Final = "ssh"
CLIENT_AUTH: Final = Protection(
    "client_auth",
    "cauth",
    CLIENT_SETTING,
    "the client logs in with its own key, not a password",
    "the client proves itself with a signature over the session (public-key login, seed 002 §三.3 "
    "免密钥登录): a relay that the client trusted cannot replay it into its own session with the real "
    "server, so what the attacker read there never runs",
    "002 §三.3",
)
SSH_TIMEOUT: Final = 20.0


class Ssh:
    id: ClassVar[str] = SSH
    order: ClassVar[int] = 3
    summary: ClassVar[str] = "SSH: the real OpenSSH sshd and ssh, an SSH man in the middle (docs/ssh.md)"
    protections: ClassVar[dict[str, Protection]] = {
        "encryption": BY_ID["encryption"],
        "ca_trust": BY_ID["ca_trust"],
        "pinning": BY_ID["pinning"],
        CLIENT_AUTH.id: CLIENT_AUTH,
    }
    attacks: ClassVar[tuple[str, ...]] = ("eavesdrop", "host-key-swap", "rogue-host-ca")
    clients: ClassVar[Mapping[str, Client]] = SSH_CLIENTS

    async def play(self, lane: LaneRun, scenario: Scenario) -> dict[str, Any]:
        ready = await lane.call("server", "ssh_ready")
        if not ready.get("ready"):
            why = str(ready.get("why") or "the server role has no sshd")
            raise NotRunHere(why) if ready.get("not_here") else CannotPlay(why)
        try:
            attacker, server = lane.service("attacker", SSH), lane.service("server", SSH)
        except ControlError as exc:
            raise CannotPlay(str(exc)) from None
        await lane.fresh({"protections": NONE.as_dict()}, attack=True)

        async def ssh(target: Address) -> dict[str, Any]:
            return await lane.call(
                "client",
                "ssh",
                client=scenario.victim,
                host=target.host,
                port=target.port,
                timeout=SSH_TIMEOUT,
            )

        if (
            scenario.positioning == ARP
        ):  # the client dials sshd's own address; the attacker's SSH part answers
            ran = await lane.through_arp([server.port], ssh, to=attacker.port)
        else:
            ran = await ssh(attacker)
            await lane.call("attacker", "idle")
            await lane.call("server", "idle")
        return {"outcome": ran.get("outcome", "ran")}

    def decide(self, run: RunEvidence, truth: GroundTruth) -> Verdict:
        return decide_ssh(run, truth)


def decide_ssh(run: RunEvidence, truth: GroundTruth) -> Verdict:
    breakages = tuple(find_ssh_breakages(run, truth))
    if (ruled := first_rules(run, breakages)) is not None:
        return ruled
    sessions = run.of("client", events.SshSession)
    if not sessions:
        return Verdict("error", breakages, error="the client recorded no ssh run")
    session = sessions[-1]
    if session.missing:
        return not_run_here(tuple(session.missing))
    words = session.words or f"exit {session.exit_code}"
    if breakages:
        return Verdict("compromised", breakages, message=words)
    ran = run.of("server", events.SshCommandRan)
    if not run.attacked:
        if session.exit_code == 0 and ran:
            return Verdict("unaffected", message=words)
        return Verdict("error", error=f"the client fails with no attacker in the way: {words}")
    refused = [e for e in run.of("attacker", events.SshUpstream) if not e.accepted]
    commands = [e for e in run.of("attacker", events.Read) if e.secret == "command"]
    if commands and refused and not ran:
        return Verdict(
            "blocked",
            (),
            CLIENT_AUTH.id,
            "userauth",
            "client",
            f"the attacker read the command `{commands[0].value}`, but the real server refused its "
            f"login as the client ({refused[0].reason or refused[0].method}): nothing ran",
        )
    if run.of("attacker", events.SshPresenting) and session.exit_code != 0 and not _read_anything(run):
        host_key_check = _host_key_protection(session.client)
        if host_key_check is not None:
            return Verdict("blocked", (), host_key_check, "host_key", "client", words)
    captures = run.of("attacker", events.Captured)
    if captures and session.exit_code == 0 and ran:
        kept = sum(len(bytes.fromhex(r.body)) for c in captures for r in c.records)
        return Verdict(
            "blocked",
            (),
            "encryption",
            "transport",
            None,
            f"the {kept} bytes the attacker kept are SSH's encrypted packets: the password is not in them",
        )
    if session.exit_code == 0 and ran:
        return Verdict("unaffected", message=words)
    return Verdict("error", error=f"the client failed, and no protection's doing is in the evidence: {words}")


def find_ssh_breakages(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    breakages = []
    passwords = [
        e for e in run.of("attacker", events.Read) if e.secret == "password" and e.value == truth.password
    ]
    if passwords:
        breakages.append(
            Breakage("password_read", "the attacker read the password (as the relay)", tuple(passwords[:1]))
        )
    upstream = [e for e in run.of("attacker", events.SshUpstream) if e.accepted]
    ran = run.of("server", events.SshCommandRan)
    if upstream and ran:
        what = ", ".join(f"`{e.command}`" for e in ran)
        breakages.append(
            Breakage(
                "command_run_by_the_attacker",
                f"the attacker logged in to the real server as {upstream[0].user} by {upstream[0].method}, "
                f"and {what} ran there",
                (upstream[0], *ran),
            )
        )
    needle = truth.password.encode()
    captured = [
        c
        for c in run.of("attacker", events.Captured)
        if any(needle in bytes.fromhex(r.body) for r in c.records)
    ]
    if captured:
        breakages.append(
            Breakage(
                "secret_in_capture", "the attacker's capture holds the password in the clear", tuple(captured)
            )
        )
    return breakages


def _read_anything(run: RunEvidence) -> bool:
    return any(e.secret in ("password", "command") for e in run.of("attacker", events.Read))


def _host_key_protection(client: str) -> str | None:
    """The protection a client configuration's known_hosts gives it (`lab.clients.ssh`), if any."""
    configuration = SSH_CLIENTS.get(client)
    return None if configuration is None else configuration.host_key_protection


STACK: Final = Ssh()
