"""Real TLS (docs/tls.md): the HTTPS bank, mitmproxy intercepting, real clients as victims.

A run: every role reset, the server told the HTTPS port bank.lab has for the client (the attacker's,
for the front door's redirect), the attacker's attack, then the real client visits bank.lab (which is
the attacker, to it; through ARP the bank's own address, whose HTTPS and plain-HTTP ports the attacker
redirects); the TLS key logs of the client and of mitmproxy are kept beside the evidence. Its
protections are the clients' own settings: the identity checks the lab channel also switches, and those
it has no switch for (`CLIENT_SETTINGS`).

A run's verdict, from what the three roles recorded and nothing else. Breakages:

- `password_read`: the attacker read the client's real password (over plain HTTP, or as the TLS relay
  holding both legs): the value is compared with the password the checker holds;
- `cookie_read`: the attacker read a session cookie the bank issued (the bank records the digest of
  every cookie it issues; the checker digests what the attacker read);
- `forged_server_accepted`: the attacker presented a certificate of its own and the client still got
  what it came for: it completed its request through the forgery;
- `transfer_forged`: the bank executed a transfer, which the client never asks for (the attacker's,
  with a stolen cookie).

Verdicts: `not-run-here` when a program the client needs is not installed on this machine (nothing
ran: `lab.system` names the package); `error` when the lab failed, the client failed without any
protection's words, or it refused a malformed certificate (a parse failure is no protection's doing,
though OpenSSL may word it as a chain error); `compromised` on any breakage; `blocked` when the client's
words (as its adapter read them, `lab.clients.adapters`) correspond to a protection; `unaffected` when
the client got what it came for and the attacker came away with nothing. A run without an attack is
never `blocked`: a client that does not get through then is an `error`. Through ARP, the link layer's
rule comes first, as on every stack (`lab.verdict.not_on_the_path`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from lab import events
from lab.channel.protections import BY_ID, NONE
from lab.clients.adapters import CLIENTS
from lab.evidence import digest
from lab.protection import CLIENT_SETTING, Protection
from lab.stacks import ARP, Client, LaneRun
from lab.stacks.scenario import Scenario
from lab.verdict import Breakage, GroundTruth, RunEvidence, Verdict, first_rules, not_run_here

REAL_TLS: Final = "real-tls"
PROBE: Final = "probe: "
"""A victim that is a command of one's own (`mitmlab probe`): this, then the command, shell-quoted."""

CLIENT_SETTINGS: Final = {
    p.id: p
    for p in (
        Protection(
            "revocation",
            "crl",
            CLIENT_SETTING,
            "the server's certificate checked against the CA's revocation list",
            "the client checks the server's certificate against the CA's revocation list (a CRL)",
            "001 §5.2.3 c",
        ),
        Protection(
            "hsts",
            "hsts",
            CLIENT_SETTING,
            "bank.lab known as HTTPS only",
            "the client knows bank.lab is HTTPS only (HSTS, remembered or preloaded) and never sends it "
            "plain HTTP",
            "",
        ),
    )
}
"""The protections of real TLS that the lab channel has no switch for: real clients' own settings."""


class RealTls:
    id: ClassVar[str] = REAL_TLS
    order: ClassVar[int] = 2
    summary: ClassVar[str] = "real TLS: the HTTPS bank, mitmproxy intercepting, real clients (docs/tls.md)"
    protections: ClassVar[dict[str, Protection]] = {
        **{p: BY_ID[p] for p in ("ca_trust", "hostname", "validity")},
        **CLIENT_SETTINGS,
        "pinning": BY_ID["pinning"],
    }
    attacks: ClassVar[tuple[str, ...]] = (
        "eavesdrop",
        "self-signed",
        "wrong-host",
        "expired-cert",
        "untrusted-root",
        "rogue-ca",
        "revoked",
        "sslstrip",
    )
    clients: ClassVar[Mapping[str, Client]] = CLIENTS

    async def play(self, lane: LaneRun, scenario: Scenario) -> dict[str, Any]:
        """A real client's visit: to the attacker as bank.lab, or (through ARP) to the bank itself."""
        side = "server" if scenario.positioning == ARP else "attacker"
        https, http = lane.service(side, "https"), lane.service(side, "http")
        await lane.fresh({"protections": NONE.as_dict(), "public_https_port": https.port}, attack=True)
        assert scenario.victim is not None
        who = (
            {"command": shlex.split(scenario.victim.removeprefix(PROBE))}
            if scenario.victim.startswith(PROBE)
            else {"client": scenario.victim}
        )

        async def visit(host: str) -> dict[str, Any]:
            return await lane.call(
                "client", "visit", address=host, https=https.port, http=http.port, **who, timeout=90
            )

        if scenario.positioning == ARP:
            visited = await lane.through_arp([https.port, http.port], lambda server: visit(server.host))
            if visited.get("outcome") == "not_positioned":
                return visited
        else:
            visited = await visit(https.host)
            await lane.call("attacker", "idle")
            await lane.call("server", "idle")
        attacker = await lane.call("attacker", "keylog")
        return {
            "outcome": "visited",
            "visited": visited.get("visited"),
            "keylogs": {"client": visited.get("keylog", ""), "attacker": attacker.get("keylog", "")},
        }

    def decide(self, run: RunEvidence, truth: GroundTruth) -> Verdict:
        return decide_visit(run, truth)


def decide_visit(run: RunEvidence, truth: GroundTruth) -> Verdict:
    breakages = tuple(find_visit_breakages(run, truth))
    if (ruled := first_rules(run, breakages)) is not None:
        return ruled
    visits = run.of("client", events.Visited)
    if not visits:
        return Verdict("error", breakages, error="the client recorded no visit")
    visited = visits[-1]
    if visited.missing:
        return not_run_here(tuple(visited.missing))
    if breakages:
        return Verdict("compromised", breakages, message=visited.words)
    if not run.attacked:
        if visited.completed:
            return Verdict("unaffected", message=visited.words)
        return Verdict("error", error=f"the client fails with no attacker in the way: {visited.words}")
    malformed = [e.malformed for e in run.of("attacker", events.Presenting) if e.malformed]
    if malformed and not visited.completed:
        return Verdict(
            "error",
            error=f"the attacker presented a malformed certificate ({malformed[0]}): refusing what it "
            f"cannot parse is no protection's doing, whatever the client said ({visited.words})",
        )
    if visited.protection is not None:
        return Verdict("blocked", (), visited.protection, "tls", "client", visited.words)
    if visited.completed:
        failed = run.of("attacker", events.AttackFailed)
        why = (
            failed[0].reason if failed else "the attacker read nothing: what it saw was TLS it does not hold"
        )
        return Verdict("unaffected", message=why)
    return Verdict(
        "error", error=f"the client failed, in words no protection corresponds to: {visited.words}"
    )


def find_visit_breakages(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    reads = run.of("attacker", events.Read)
    issued = {e.session for e in run.of("server", events.WebLogin)}
    breakages = []
    passwords = [e for e in reads if e.secret == "password" and e.value == truth.password]
    if passwords:
        how = sorted({e.how.replace("_", " ") for e in passwords})
        breakages.append(
            Breakage("password_read", f"the attacker read the password ({', '.join(how)})", tuple(passwords))
        )
    cookies = [
        e
        for e in reads
        if e.secret == "cookie" and isinstance(e.value, str) and digest(e.value.encode()) in issued
    ]
    if cookies:
        breakages.append(
            Breakage(
                "cookie_read", "the attacker read the session cookie the bank issued", tuple(cookies[:1])
            )
        )
    presented = run.of("attacker", events.Presenting)
    completed = [e for e in run.of("client", events.Visited) if e.completed]
    if presented and completed:
        what = presented[0].certificate
        breakages.append(
            Breakage(
                "forged_server_accepted",
                f"the client completed its request through the attacker's certificate ({what})",
                (presented[0], completed[0]),
            )
        )
    transfers = run.of("server", events.TransferExecuted)
    if transfers:
        detail = ", ".join(f"{t.amount} to {t.to}" for t in transfers)
        breakages.append(
            Breakage(
                "transfer_forged",
                f"the bank executed a transfer the client never made: {detail}",
                tuple(transfers),
            )
        )
    return breakages


STACK: Final = RealTls()
