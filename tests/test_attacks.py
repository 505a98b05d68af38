"""Every attack, run for real: the bank server, mitmproxy with the attack's addon in front of it, and
the client dialling the attacker, all on loopback. Each attack is shown both ways: with the protection
the brief names switched off, it works and the evidence says what was read or changed; under
`recommended`, the client or server refuses with the typed error naming that protection (or, for the
passive attacks, the checker finds no secret in the capture and names what the agreed suite did).

The expectations live here, in the tests; the product only records what each role saw.
"""

from __future__ import annotations

import pytest

from lab.channel.errors import PeerRefused, Refusal
from lab.channel.protections import NONE, RECOMMENDED
from lab.roles.client import ReplyUnreadable
from lab.state import StateDir
from tests.world import Outcome, run_attack


def refused_by(outcome: Outcome, protection: str, role: str) -> None:
    """`role` refused with `protection`, and the client's own error says so too."""
    refusals = outcome.events(role, "refusal")
    assert [r["protection"] for r in refusals] == [protection], refusals
    error = outcome.client_error
    assert isinstance(error, Refusal | PeerRefused), error
    assert error.protection == protection


# Passive: eavesdrop, key-compromise -----------------------------------------------------------------


def test_eavesdrop_reads_the_password_in_plaintext(state: StateDir) -> None:
    outcome = run_attack(state, "eavesdrop", NONE)
    assert outcome.client_error is None
    assert outcome.read("password") == [state.client_password()]
    assert 900 in outcome.read("balance")
    [broken] = (
        outcome.verdict().breakages
    )  # found by the checker in the capture, not on the word of the addon
    assert broken.kind == "secret_in_capture" and "password in client record #0" in broken.detail


def test_eavesdrop_reads_nothing_when_records_are_encrypted(state: StateDir) -> None:
    outcome = run_attack(state, "eavesdrop", RECOMMENDED)
    assert outcome.client_error is None and outcome.read("password") == []
    [capture] = outcome.events("attacker", "captured")
    assert len(capture["records"]) == 6  # login, transfer, balance and their replies: ciphertext
    verdict = outcome.verdict()
    assert (verdict.verdict, verdict.blocked_by) == ("blocked", "encryption")


def test_key_compromise_decrypts_an_rsa_recording_with_the_stolen_key(state: StateDir) -> None:
    outcome = run_attack(state, "key-compromise", RECOMMENDED.without("forward_secrecy"))
    assert outcome.client_error is None
    assert outcome.read("password") == [state.client_password()]
    assert {e["how"] for e in outcome.events("attacker", "read")} == {"decrypted_offline"}
    [recorded] = outcome.events("attacker", "recorded")
    assert recorded["suite"].startswith("RSA_")


def test_key_compromise_fails_against_forward_secrecy(state: StateDir) -> None:
    outcome = run_attack(state, "key-compromise", RECOMMENDED)
    assert outcome.read("password") == []
    [tried] = outcome.events("attacker", "decrypted_offline")
    assert tried["records"] == 0 and "X25519" in tried["failure"]
    verdict = outcome.verdict()
    assert (verdict.verdict, verdict.blocked_by) == ("blocked", "forward_secrecy")


# The relay: the attacker presents a certificate of its own ------------------------------------------


@pytest.mark.parametrize(
    ("attack", "protection"),
    [
        ("pubkey-swap", "ca_trust"),
        ("self-signed", "ca_trust"),
        ("wrong-host", "hostname"),
        ("expired-cert", "validity"),
    ],
)
def test_certificate_attacks_read_everything_or_are_refused_by_the_client(
    state: StateDir, attack: str, protection: str
) -> None:
    weak = run_attack(state, attack, RECOMMENDED.without(protection))
    assert weak.client_error is None
    assert weak.read("password") == [state.client_password()]  # the client logged in through the attacker
    assert {"to": "bob", "amount": 100} in weak.read("transfer")
    assert len(weak.events("server", "transfer_executed")) == 1  # relayed on to the real bank

    state.reset()
    strong = run_attack(state, attack, RECOMMENDED)
    refused_by(strong, protection, "client")
    assert strong.read("password") == []
    assert strong.events("server", "transfer_executed") == []
    [failure] = strong.events("attacker", "attack_failed")
    assert failure["reason"].startswith("the client refused")  # its alert told the attacker


def test_pinning_stops_pubkey_swap_even_without_ca_trust(state: StateDir) -> None:
    pinned = RECOMMENDED.plus("pinning").without("ca_trust")
    first = run_attack(state, None, pinned)  # a clean session first, so the pin is the real server's
    assert first.client_error is None
    outcome = run_attack(state, "pubkey-swap", pinned)
    assert outcome.events("client", "refusal")[-1]["protection"] == "pinning"
    assert outcome.read("password") == []


# Records: bit-flip, replay, reflection ---------------------------------------------------------------


def test_bit_flip_pays_eve_without_a_mac(state: StateDir) -> None:
    weak = run_attack(state, "bit-flip", RECOMMENDED.without("mac"))
    [executed] = weak.events("server", "transfer_executed")
    [sent] = [e for e in weak.events("client", "record_sent") if e["op"] == "transfer"]
    assert (sent["to"], executed["to"]) == ("bob", "eve")  # a transfer the client never sent

    state.reset()
    strong = run_attack(state, "bit-flip", RECOMMENDED)
    refused_by(strong, "mac", "server")
    assert strong.events("server", "transfer_executed") == []


def test_replay_executes_one_transfer_twice_without_sequence_numbers(state: StateDir) -> None:
    weak = run_attack(state, "replay", RECOMMENDED.without("sequence_numbers"))
    executed = weak.events("server", "transfer_executed")
    assert len(executed) == 2 and len({e["session"] for e in executed}) == 1
    assert len([e for e in weak.events("client", "record_sent") if e["op"] == "transfer"]) == 1

    state.reset()
    strong = run_attack(state, "replay", RECOMMENDED)
    refused_by(strong, "sequence_numbers", "server")
    assert len(strong.events("server", "transfer_executed")) == 1


def test_reflection_makes_the_client_accept_its_own_record_with_one_key(state: StateDir) -> None:
    weak = run_attack(state, "reflection", RECOMMENDED.without("per_direction_keys"))
    sent = {e["plaintext"] for e in weak.events("client", "record_sent")}
    received = {e["plaintext"] for e in weak.events("client", "record_received")}
    server_sent = {e["plaintext"] for e in weak.events("server", "record_sent")}
    assert (
        received & sent and not received & sent & server_sent
    )  # its own message, which the server never sent

    assert [b.kind for b in weak.verdict().breakages] == ["message_not_from_server_accepted"]

    state.reset()
    strong = run_attack(state, "reflection", RECOMMENDED)
    refused_by(strong, "per_direction_keys", "client")


def test_reflection_without_a_mac_gives_the_client_garbage_under_per_direction_keys(state: StateDir) -> None:
    """No MAC to refuse it: the client decrypts its own record under the server's write key and gets bytes
    no one sent. The client cannot read the reply; that is per_direction_keys at work, not the attack."""
    garbled = run_attack(state, "reflection", RECOMMENDED.without("mac"))
    assert isinstance(garbled.client_error, ReplyUnreadable)
    [unreadable] = garbled.events("client", "reply_unreadable")
    assert unreadable["op"] == "login"
    verdict = garbled.verdict()
    assert (verdict.verdict, verdict.blocked_by) == ("blocked", "per_direction_keys")
    assert verdict.refused_by_role is None  # the client refused nothing: it could not read the reply

    state.reset()
    one_key = run_attack(state, "reflection", RECOMMENDED.without("mac", "per_direction_keys"))
    assert [b.kind for b in one_key.verdict().breakages] == ["message_not_from_server_accepted"]


# The handshake: session-replay, downgrade ------------------------------------------------------------


def test_session_replay_executes_the_transfer_again_in_a_new_session(state: StateDir) -> None:
    weak = run_attack(state, "session-replay", RECOMMENDED.without("server_random", "forward_secrecy"))
    executed = weak.events("server", "transfer_executed")
    assert len(executed) == 2 and len({e["session"] for e in executed}) == 2
    opened = weak.events("server", "session_opened")
    assert len({e["client_random"] for e in opened}) == 1  # the same ClientHello, twice

    state.reset()
    strong = run_attack(state, "session-replay", RECOMMENDED)
    refusals = strong.events("server", "refusal")
    assert [r["protection"] for r in refusals] == ["server_random"]
    assert strong.client_error is None  # the real client's own session was untouched
    assert len(strong.events("server", "transfer_executed")) == 1


def test_downgrade_runs_the_session_on_the_legacy_suite_without_transcript(state: StateDir) -> None:
    weak = run_attack(state, "downgrade", RECOMMENDED.without("transcript"))
    [client_session] = weak.events("client", "session_opened")
    [server_session] = weak.events("server", "session_opened")
    assert client_session["suite"] == "RSA_AES128_CTR"
    assert (
        "ECDHE_AES128_GCM" in client_session["offered"] and "ECDHE_AES128_GCM" in server_session["supported"]
    )

    state.reset()
    strong = run_attack(state, "downgrade", RECOMMENDED)
    refused_by(strong, "transcript", "server")


def test_no_attack_passes_traffic_through(state: StateDir) -> None:
    outcome = run_attack(state, None, RECOMMENDED)
    assert outcome.client_error is None and outcome.evidence["attacker"] == []
