"""The verdict rules on evidence written as the roles write it: what counts as broken, blocked, an error.

(The end-to-end tests in test_check.py run the real roles; these pin down each rule on its own.)
"""

from __future__ import annotations

import itertools

import msgspec

from lab import events as ev
from lab.bank import protocol
from lab.events import Event
from lab.stacks.lab_channel import decide
from lab.verdict import GroundTruth, RunEvidence

TRUTH = GroundTruth(password="s3cret", server_key="SHA256:real")
OFFERED = ["ECDHE_AES128_GCM", "RSA_AES128_CTR"]
_clock = itertools.count()


def at(role: str, event: Event) -> Event:
    """The event as `role` would have recorded it, one microsecond after the one before."""
    return msgspec.structs.replace(event, ts=f"2026-11-23T10:00:00.{next(_clock):06d}+00:00", role=role)


def client_opened(
    suite: str = "ECDHE_AES128_GCM",
    key: str = "SHA256:real",
    random: str = "c1",
    offered: list[str] = OFFERED,
) -> Event:
    return at(
        "client",
        ev.ClientSessionOpened(
            suite=suite,
            offered=offered,
            client_random=random,
            server_random="s1",
            server_subject="CN=bank.lab" if key == TRUTH.server_key else "CN=attacker.lab",
            server_key=key,
            checks=[],
            pin=None,
        ),
    )


def server_opened(
    session: str = "s1", suite: str = "ECDHE_AES128_GCM", supported: list[str] = OFFERED
) -> Event:
    return at(
        "server",
        ev.ServerSessionOpened(
            session=session,
            peer="127.0.0.1:1",
            suite=suite,
            offered=OFFERED,
            supported=supported,
            client_random="c1",
            server_random="s1",
        ),
    )


def executed(to: str = "bob", amount: int = 100, session: str = "s1", seq: int = 0) -> Event:
    return at(
        "server",
        ev.TransferExecuted(
            session=session, seq=seq, transfer=seq + 1, from_account="alice", to=to, amount=amount
        ),
    )


def received(plaintext: str, frame: str = "f-other", seq: int = 1) -> Event:
    return at("client", ev.ClientRecordReceived(seq=seq, plaintext=plaintext, frame=frame, size=10))


def clean_session(
    *extra: Event, suite: str = "ECDHE_AES128_GCM", per_direction_keys: bool = True
) -> RunEvidence:
    offered = OFFERED if suite in OFFERED else [suite]  # else both ends support only the suite they ran on
    recorded = [
        at(
            "client",
            ev.Connecting(
                host="127.0.0.1",
                port=1,
                server_name="bank.lab",
                protections={"per_direction_keys": per_direction_keys},
            ),
        ),
        client_opened(suite, offered=offered),
        server_opened(suite=suite, supported=offered),
        at(
            "client",
            ev.ClientRecordSent(
                seq=0, op="transfer", to="bob", amount=100, plaintext="p-transfer", frame="f-transfer"
            ),
        ),
        executed(),
        at("server", ev.ServerRecordSent(session="s1", seq=0, plaintext="p-reply", frame="f-reply")),
        received("p-reply", "f-reply", seq=0),
        at("client", ev.Reply(op="transfer", reply={"ok": True, "balance": 900})),
        *extra,
    ]
    run = RunEvidence(client_outcome="ok")
    for event in recorded:
        run.events.setdefault(event.role, []).append(event)
    return run


def read(secret: str, value: object, how: ev.ReadHow) -> Event:
    return at("attacker", ev.Read(attack="a", secret=secret, value=value, how=how, where="x"))


def captured(*bodies: bytes) -> Event:
    records = [ev.CapturedRecord(from_client=True, body=body.hex()) for body in bodies]
    return at("attacker", ev.Captured(attack="eavesdrop", records=records))


def test_a_clean_session_is_unaffected() -> None:
    verdict = decide(clean_session(), TRUTH)
    assert verdict.verdict == "unaffected" and not verdict.breakages


def test_only_a_real_secret_counts_as_read() -> None:
    assert decide(clean_session(read("password", "hunter2", "as_the_relay")), TRUTH).verdict == "unaffected"
    verdict = decide(clean_session(read("password", "s3cret", "as_the_relay")), TRUTH)
    assert [b.kind for b in verdict.breakages] == ["secret_read"]
    odd = clean_session(
        at("client", ev.Reply(op="balance", reply={"ok": True, "balance": [1]})),
        read("balance", [1], "as_the_relay"),
    )
    assert (
        decide(odd, TRUTH).verdict == "unaffected"
    )  # a forged, unhashable balance neither counts nor crashes
    offline = read("balance", 900, "decrypted_offline")
    assert [b.kind for b in decide(clean_session(offline), TRUTH).breakages] == ["recording_decrypted"]


def test_what_an_attacker_says_it_read_in_the_clear_is_not_taken_on_its_word() -> None:
    """In the clear, the checker searches the capture itself: a claim with no capture behind it is nothing."""
    assert decide(clean_session(read("password", "s3cret", "in_the_clear")), TRUTH).verdict == "unaffected"


def test_the_capture_is_searched_for_the_real_secrets() -> None:
    login = protocol.login("alice", "s3cret")
    [broken] = decide(clean_session(captured(login), suite="RSA_NULL"), TRUTH).breakages
    assert broken.kind == "secret_in_capture" and "password in client record #0" in broken.detail
    transfer = decide(clean_session(captured(b"xx" + protocol.transfer("bob", 100)), suite="RSA_NULL"), TRUTH)
    assert [b.kind for b in transfer.breakages] == ["secret_in_capture"]
    guessed = protocol.login("alice", "hunter2")
    assert decide(clean_session(captured(guessed), suite="RSA_NULL"), TRUTH).verdict == "unaffected"


def test_a_passive_attacker_left_empty_handed_is_blocked_by_what_the_agreed_suite_does() -> None:
    ciphertext = clean_session(captured(b"\x8f\x12"), suite="RSA_AES128_GCM")
    verdict = decide(ciphertext, TRUTH)
    assert (verdict.verdict, verdict.blocked_by, verdict.refused_by_role) == ("blocked", "encryption", None)
    stolen = at(
        "attacker", ev.DecryptedOffline(attack="key-compromise", key="SHA256:real", records=0, failure="x")
    )
    assert decide(clean_session(captured(b"\x8f"), stolen), TRUTH).blocked_by == "forward_secrecy"
    other_key = at("attacker", ev.DecryptedOffline(attack="key-compromise", key="SHA256:other", records=0))
    assert decide(clean_session(captured(b"\x8f"), other_key), TRUTH).blocked_by == "encryption"
    assert decide(clean_session(captured(b"\x8f"), suite="RSA_NULL"), TRUTH).verdict == "unaffected"
    unopened = decide(clean_session(captured(b"\x8f"), stolen, suite="RSA_AES128_GCM"), TRUTH)
    assert unopened.verdict == "error"  # the real key on an RSA recording must open it: the lab failed


def test_the_attackers_own_failure_never_names_a_protection() -> None:
    claimed = clean_session(at("attacker", ev.AttackFailed(attack="a", reason="encrypted", step="record")))
    verdict = decide(claimed, TRUTH)
    assert verdict.verdict == "unaffected" and verdict.message == "encrypted"


def test_a_transfer_the_client_never_sent() -> None:
    run = clean_session(executed("eve", seq=1))
    assert [b.kind for b in decide(run, TRUTH).breakages] == ["transfer_altered"]


def test_a_transfer_executed_twice_in_one_session_and_in_a_replayed_one() -> None:
    twice = clean_session(executed(seq=2))
    assert [b.kind for b in decide(twice, TRUTH).breakages] == ["transfer_executed_twice"]
    replayed = clean_session(server_opened("s2", "RSA_AES128_GCM", []), executed(session="s2", seq=1))
    assert [b.kind for b in decide(replayed, TRUTH).breakages] == ["transfer_replayed_in_new_session"]


def test_the_client_accepting_its_own_record_is_compromised() -> None:
    own = clean_session(received("p-transfer", "f-transfer"))
    [broken] = decide(own, TRUTH).breakages
    assert broken.kind == "message_not_from_server_accepted" and "its own" in broken.detail


def test_a_reflected_record_that_decrypts_to_garbage_is_per_direction_keys_at_work() -> None:
    """The same frame the client sent came back and read as bytes no one sent: not the attack working."""
    garbled = clean_session(received("p-garbage", "f-transfer"))
    garbled.client_outcome = "ReplyUnreadable"
    verdict = decide(garbled, TRUTH)
    assert (verdict.verdict, verdict.blocked_by, verdict.refused_by_role) == (
        "blocked",
        "per_direction_keys",
        None,
    )
    one_key = clean_session(received("p-garbage", "f-transfer"), per_direction_keys=False)
    one_key.client_outcome = "ReplyUnreadable"
    assert decide(one_key, TRUTH).verdict == "error"  # garbage nothing explains is the lab's failure
    unrelated = clean_session(received("p-garbage", "f-unknown"))
    unrelated.client_outcome = "ReplyUnreadable"
    assert decide(unrelated, TRUTH).verdict == "error"


def test_a_forged_server() -> None:
    forged = clean_session(client_opened("ECDHE_AES128_GCM", key="SHA256:attacker", random="c9"))
    assert "forged_server_accepted" in [b.kind for b in decide(forged, TRUTH).breakages]


def test_a_weaker_suite_than_both_sides_support() -> None:
    verdict = decide(clean_session(suite="RSA_AES128_CTR"), TRUTH)
    [broken] = verdict.breakages
    assert broken.kind == "weaker_suite_negotiated" and "ECDHE_AES128_GCM" in broken.detail


def test_blocked_names_the_first_refusal() -> None:
    run = clean_session(
        at("server", ev.Refusal(protection="mac", step="record", message="altered", error="RecordTampered")),
        at(
            "client", ev.Refusal(protection="hostname", step="server_certificate", message="later", error="X")
        ),
    )
    verdict = decide(run, TRUTH)
    assert (verdict.verdict, verdict.blocked_by, verdict.step, verdict.refused_by_role) == (
        "blocked",
        "mac",
        "record",
        "server",
    )


def test_lab_failures_are_errors_never_blocked_and_keep_what_was_found() -> None:
    crashed = clean_session(at("server", ev.Refusal(protection="mac", step="record", message="m", error="X")))
    crashed.lab_error = "a role died: attacker (exit code -9)"
    verdict = decide(crashed, TRUTH)
    assert verdict.verdict == "error" and "attacker" in (verdict.error or "")
    buggy = clean_session(
        at("attacker", ev.AddonError(attack="a", error="KeyError: x")),
        read("password", "s3cret", "as_the_relay"),
    )
    verdict = decide(buggy, TRUTH)
    assert verdict.verdict == "error" and [b.kind for b in verdict.breakages] == ["secret_read"]
    silent = clean_session()
    silent.client_outcome = "NoReply"
    assert decide(silent, TRUTH).verdict == "error"
