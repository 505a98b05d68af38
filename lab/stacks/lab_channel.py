"""The lab channel (docs/protocol.md): the lab's own TLS-like channel, every protection a switch.

A run: every role reset, the server configured with the scenario's protections, the attacker's attack
(after a clean session straight to the server, if the scenario makes a key pin first: its evidence is
kept apart, under pre/), then the client logs in, transfers 100 to bob and reads the balance, dialling
the attacker as bank.lab (through ARP: the server's own address); then the attacker and the server wait
until idle (a session-replay happens after the client has gone).

A run's verdict, computed from what the roles recorded and nothing else.

The checker does not know what an attack is supposed to do. It looks, in every run, for every kind of
breakage the brief names, and compares what the attacker claims with what the client and server saw:

- `secret_read`: an attacker `read` as the relay (holding both legs' keys) whose value is a real
  secret: the client's password, a transfer the client sent, a balance the client received.
- `recording_decrypted`: the same, read from a recording with a key obtained later.
- `forged_server_accepted`: the client accepted a server key that is not the real server's.
- `transfer_altered`: the server executed a transfer the client never sent.
- `transfer_executed_twice`: the server executed more of a transfer than the client sent, in one session.
- `transfer_replayed_in_new_session`: the same, across sessions opened with the same ClientHello random.
- `secret_in_capture`: a real secret appears in the clear in a passive attacker's capture (the checker
  searches the capture itself).
- `message_not_from_server_accepted`: the client accepted a record whose plaintext the server never sent
  but someone did (its own, sent back): bytes that decrypt to what no one sent are not this.
- `weaker_suite_negotiated`: the session ran on a weaker suite than the best both sides support.

Its verdicts (`lab.verdict` says what each word means, on every stack): `blocked` when a protection
refused (a client or server `refusal`: protection and step from the typed error); or, where no role
refused, when the wire shows which protection left the attack empty-handed: a passive attacker's capture
holds no secret because the suite both ends recorded encrypts (`encryption`), or the real server key it
used decrypts nothing because that suite is ECDHE (`forward_secrecy`); or the client's own record came
back and decrypted to what no one sent under the server's write key (`per_direction_keys`). The
attacker's own account never names the protection. `unaffected`: the session went through untouched and
the attack found nothing to act on (for example `downgrade` when the client offers nothing stronger
than the legacy suites). Through ARP, the link layer's rule comes first (`lab.verdict.not_on_the_path`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from lab import events
from lab.bank import protocol
from lab.channel.protections import BY_ID, Protections
from lab.channel.suites import ALL_SUITES, KeyExchange, Suite
from lab.events import Event
from lab.net import Address
from lab.protection import Protection
from lab.stacks import ARP, Client, LaneRun
from lab.stacks.scenario import LAB_CHANNEL, Scenario
from lab.state import SERVER_NAME
from lab.verdict import Breakage, GroundTruth, RunEvidence, Verdict, first_rules

SESSION: Final = [{"op": "transfer", "to": "bob", "amount": 100}, {"op": "balance"}]
PIN_SESSION: Final = [{"op": "balance"}]


class LabChannel:
    id: ClassVar[str] = LAB_CHANNEL
    order: ClassVar[int] = 1
    summary: ClassVar[str] = "the lab's own TLS-like channel, every protection a switch (docs/protocol.md)"
    protections: ClassVar[Mapping[str, Protection]] = BY_ID
    attacks: ClassVar[tuple[str, ...]] = (
        "eavesdrop",
        "pubkey-swap",
        "self-signed",
        "wrong-host",
        "expired-cert",
        "bit-flip",
        "replay",
        "session-replay",
        "reflection",
        "downgrade",
        "key-compromise",
    )
    clients: ClassVar[Mapping[str, Client]] = {}

    async def play(self, lane: LaneRun, scenario: Scenario) -> dict[str, Any]:
        await lane.fresh({"protections": scenario.server.as_dict()}, attack=not scenario.pin_first)
        if scenario.pin_first:
            began = time.time()  # the capture's clock: the diagram tells the client's own connection by it
            await _session(lane, scenario.client, lane.service("server", "service"), PIN_SESSION)
            lane.went_direct(began, time.time())
            await lane.call("server", "idle")
            await lane.set_aside()
            await lane.call("attacker", "attack", id=scenario.attack)
        if scenario.positioning == ARP:
            port = lane.service("server", "service").port
            return await lane.through_arp(
                [port], lambda server: _session(lane, scenario.client, server, SESSION)
            )
        outcome = await _session(lane, scenario.client, lane.service("attacker", "service"), SESSION)
        await lane.call("attacker", "idle")
        await lane.call("server", "idle")
        return outcome

    def decide(self, run: RunEvidence, truth: GroundTruth) -> Verdict:
        return decide(run, truth)


async def _session(
    lane: LaneRun, protections: Protections, target: Address, commands: list[Any]
) -> dict[str, Any]:
    return await lane.call(
        "client",
        "session",
        protections=protections.as_dict(),
        host=target.host,
        port=target.port,
        server_name=SERVER_NAME,
        commands=commands,
    )


def decide(run: RunEvidence, truth: GroundTruth) -> Verdict:
    breakages = tuple(find_breakages(run, truth))
    if (ruled := first_rules(run, breakages)) is not None:
        return ruled
    if breakages:
        return Verdict("compromised", breakages)
    refusals = sorted(run.of("client", events.Refusal) + run.of("server", events.Refusal), key=lambda e: e.ts)
    if refusals:
        first = refusals[0]
        return Verdict("blocked", (), first.protection, first.step, first.role, first.message)
    defeat = _reflection_garbled(run) or _capture_unreadable(run, truth)
    if defeat is not None:
        return defeat
    if run.client_outcome not in (None, "ok"):
        return Verdict(
            "error", error=f"the client's session ended with {run.client_outcome}, yet nothing refused"
        )
    return Verdict("unaffected", message=_why_unaffected(run))


def _why_unaffected(run: RunEvidence) -> str:
    failures = run.of("attacker", events.AttackFailed)
    return failures[0].reason if failures else "the attack changed nothing the roles could see"


def find_breakages(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    return [
        *_secrets_read(run, truth),
        *_secrets_in_capture(run, truth),
        *_forged_servers(run, truth),
        *_transfers(run),
        *_messages_not_from_server(run),
        *_weaker_suites(run),
    ]


def _transfers_sent(run: RunEvidence) -> Counter[tuple[str | None, int | None]]:
    return Counter((e.to, e.amount) for e in run.of("client", events.ClientRecordSent) if e.op == "transfer")


def _balances_received(run: RunEvidence) -> set[int]:
    return {
        e.reply["balance"]
        for e in run.of("client", events.Reply)
        if isinstance(e.reply.get("balance"), int) and not isinstance(e.reply.get("balance"), bool)
    }


def _secrets_read(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    """What the attacker read with keys: as the relay (it holds both legs' keys), or from a recording
    with a stolen key. Counted only when the value is the real secret."""
    sent_transfers = _transfers_sent(run)
    balances = _balances_received(run)

    def real(event: events.Read) -> bool:
        value = event.value
        match event.secret:
            case "password":
                return isinstance(value, str) and value == truth.password
            case "transfer":
                return isinstance(value, dict) and (value.get("to"), value.get("amount")) in sent_transfers
            case "balance":
                return isinstance(value, int) and value in balances
        return False

    breakages = []
    for kind, how in (("secret_read", "as_the_relay"), ("recording_decrypted", "decrypted_offline")):
        reads = [e for e in run.of("attacker", events.Read) if e.how == how and real(e)]
        if reads:
            secrets = sorted({e.secret for e in reads})
            breakages.append(
                Breakage(
                    kind,
                    f"the attacker read the {', '.join(secrets)} ({how.replace('_', ' ')})",
                    tuple(reads),
                )
            )
    return breakages


def _secrets_in_capture(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    """The real secrets, searched for in the bytes a passive attacker captured."""
    wanted = {"password": [truth.password.encode()]}
    wanted["transfer"] = [
        protocol.transfer(to, amount) for to, amount in _transfers_sent(run) if to and amount
    ]
    wanted["balance"] = [f'"balance":{b}'.encode() for b in _balances_received(run)]
    found: dict[str, list[str]] = {}
    shown: list[Event] = []
    for capture in run.of("attacker", events.Captured):
        counters = {True: 0, False: 0}
        for record in capture.records:
            body = bytes.fromhex(record.body)
            where = f"{'client' if record.from_client else 'server'} record #{counters[record.from_client]}"
            counters[record.from_client] += 1
            for secret, needles in wanted.items():
                if any(needle in body for needle in needles):
                    found.setdefault(secret, []).append(where)
                    if capture not in shown:
                        shown.append(capture)
    if not found:
        return []
    what = "; ".join(f"the {secret} in {', '.join(where)}" for secret, where in sorted(found.items()))
    return [
        Breakage("secret_in_capture", f"the attacker's capture holds, in the clear, {what}", tuple(shown))
    ]


def _forged_servers(run: RunEvidence, truth: GroundTruth) -> list[Breakage]:
    forged = [e for e in run.of("client", events.ClientSessionOpened) if e.server_key != truth.server_key]
    if not forged:
        return []
    subjects = sorted({e.server_subject for e in forged})
    return [
        Breakage(
            "forged_server_accepted",
            f"the client accepted a key that is not the server's ({', '.join(subjects)})",
            tuple(forged),
        )
    ]


def _transfers(run: RunEvidence) -> list[Breakage]:
    sent = _transfers_sent(run)
    executed = run.of("server", events.TransferExecuted)
    breakages = []
    altered = [e for e in executed if (e.to, e.amount) not in sent]
    if altered:
        what = ", ".join(f"{e.amount} to {e.to}" for e in altered)
        breakages.append(
            Breakage(
                "transfer_altered", f"the server executed {what}, which the client never sent", tuple(altered)
            )
        )
    randoms = {e.session: e.client_random for e in run.of("server", events.ServerSessionOpened)}
    for key, count in Counter((e.to, e.amount) for e in executed).items():
        if key not in sent or count <= sent[key]:
            continue
        copies = tuple(e for e in executed if (e.to, e.amount) == key)
        sessions = {e.session for e in copies}
        replayed_hello = len(sessions) > 1 and len({randoms.get(s) for s in sessions}) == 1
        kind = "transfer_replayed_in_new_session" if replayed_hello else "transfer_executed_twice"
        where = (
            f"in {len(sessions)} sessions opened with the same ClientHello"
            if replayed_hello
            else "in one session"
        )
        breakages.append(
            Breakage(kind, f"{key[1]} to {key[0]} executed {count} times, sent {sent[key]} ({where})", copies)
        )
    return breakages


def _foreign_records(run: RunEvidence) -> list[events.ClientRecordReceived]:
    """Records the client accepted whose plaintext is none the server sent."""
    from_server = {e.plaintext for e in run.of("server", events.ServerRecordSent)}
    return [e for e in run.of("client", events.ClientRecordReceived) if e.plaintext not in from_server]


def _messages_not_from_server(run: RunEvidence) -> list[Breakage]:
    own = {e.plaintext for e in run.of("client", events.ClientRecordSent)}
    accepted = [e for e in _foreign_records(run) if e.plaintext in own]
    if not accepted:
        return []
    return [
        Breakage(
            "message_not_from_server_accepted",
            f"the client accepted {len(accepted)} record(s) the server never sent: its own, sent back",
            tuple(accepted),
        )
    ]


def _reflection_garbled(run: RunEvidence) -> Verdict | None:
    """The client's own record came back (the same frame on the wire) and decrypted to bytes no one
    sent: under per_direction_keys the client reads with the server's write key, not its own."""
    own_frames = {e.frame for e in run.of("client", events.ClientRecordSent)}
    sent = {e.plaintext for e in run.of("client", events.ClientRecordSent)}
    garbled = [e for e in _foreign_records(run) if e.frame in own_frames and e.plaintext not in sent]
    settings = run.of("client", events.Connecting)
    if not garbled or not settings or not settings[-1].protections.get("per_direction_keys"):
        return None
    return Verdict(
        "blocked",
        (),
        "per_direction_keys",
        "record",
        None,
        f"the client's own record #{garbled[0].seq} came back; read under the server's write key it "
        "decrypted to bytes no one sent",
    )


def _agreed_suite(run: RunEvidence) -> Suite | None:
    """The suite both ends recorded for the session (None unless they agree and know it)."""
    client = {e.suite for e in run.of("client", events.ClientSessionOpened)}
    server = {e.suite for e in run.of("server", events.ServerSessionOpened)}
    known = {s.name for s in ALL_SUITES}
    agreed = client & server & known
    return Suite.from_name(agreed.pop()) if len(agreed) == 1 and client == server else None


def _capture_unreadable(run: RunEvidence, truth: GroundTruth) -> Verdict | None:
    """A passive attacker came away empty-handed: say which protection of the agreed suite did it."""
    captures = run.of("attacker", events.Captured)
    suite = _agreed_suite(run)
    if not captures or suite is None:
        return None
    stolen = [e for e in run.of("attacker", events.DecryptedOffline) if e.key == truth.server_key]
    if stolen and suite.key_exchange is KeyExchange.ECDHE:
        return Verdict(
            "blocked",
            (),
            "forward_secrecy",
            "client_key_exchange",
            None,
            f"the session ran on {suite.name}, both ends recorded: its keys came from ephemeral X25519 "
            "shares, and the real server key the attacker used decrypts nothing of the recording",
        )
    if stolen and suite.record.encrypts:  # RSA key transport and the real key: it must have opened
        why = stolen[0].failure or "no real secret came out"
        return Verdict("error", error=f"the real server key did not open an RSA recording ({why})")
    if suite.record.encrypts:
        records = sum(len(c.records) for c in captures)
        return Verdict(
            "blocked",
            (),
            "encryption",
            "record",
            None,
            f"the session ran on {suite.name}, both ends recorded: the {records} captured record(s) "
            "are ciphertext and hold no secret",
        )
    return None


def _weaker_suites(run: RunEvidence) -> list[Breakage]:
    supported = {e.client_random: e.supported for e in run.of("server", events.ServerSessionOpened)}
    breakages = []
    known = {s.name for s in ALL_SUITES}
    for session in run.of("client", events.ClientSessionOpened):
        server_side = supported.get(session.client_random)
        if server_side is None:
            continue  # the client's hello never reached the server as such (a relay answered it)
        common = set(session.offered) & set(server_side) & known
        if not common or session.suite not in known:
            continue
        best = max(Suite.from_name(name) for name in common)
        used = Suite.from_name(session.suite)
        if used < best:
            breakages.append(
                Breakage(
                    "weaker_suite_negotiated",
                    f"the session ran on {used.name}; both sides support {best.name}",
                    (session,),
                )
            )
    return breakages


STACK: Final = LabChannel()
