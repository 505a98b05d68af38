"""The verdict rules on evidence written as the roles write it: what counts as broken, blocked, an error.

(The end-to-end tests in test_check.py run the real roles; these pin down each rule on its own.)
"""

from __future__ import annotations

import itertools
from typing import Any

from lab.checker.verdict import GroundTruth, RunEvidence, decide

TRUTH = GroundTruth(password="s3cret", server_key="SHA256:real")
_clock = itertools.count()


def event(role: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"ts": f"2026-11-23T10:00:00.{next(_clock):06d}+00:00", "role": role, "event": name, **fields}


def clean_session(*extra: dict[str, Any], suite: str = "ECDHE_AES128_GCM") -> RunEvidence:
    offered = ["ECDHE_AES128_GCM", "RSA_AES128_CTR"]
    events = [
        event(
            "client",
            "session_opened",
            suite=suite,
            offered=offered,
            client_random="c1",
            server_key="SHA256:real",
            server_subject="CN=bank.lab",
        ),
        event("server", "session_opened", session="s1", suite=suite, supported=offered, client_random="c1"),
        event("client", "record_sent", seq=0, op="transfer", to="bob", amount=100, plaintext="p-transfer"),
        event("server", "transfer_executed", session="s1", seq=0, to_account="bob", amount=100),
        event("server", "record_sent", session="s1", seq=0, plaintext="p-reply"),
        event("client", "record_received", seq=0, plaintext="p-reply"),
        event("client", "reply", op="transfer", reply={"ok": True, "balance": 900}),
        *extra,
    ]
    run = RunEvidence(client_outcome="ok")
    for e in events:
        run.events.setdefault(e["role"], []).append(e)
    return run


def test_a_clean_session_is_unaffected() -> None:
    verdict = decide(clean_session(), TRUTH)
    assert verdict.verdict == "unaffected" and not verdict.breakages


def test_only_a_real_secret_counts_as_read() -> None:
    guessed = event("attacker", "read", secret="password", value="hunter2", how="in_the_clear", where="x")
    assert decide(clean_session(guessed), TRUTH).verdict == "unaffected"
    real = event("attacker", "read", secret="password", value="s3cret", how="as_the_relay", where="x")
    verdict = decide(clean_session(real), TRUTH)
    assert [b.kind for b in verdict.breakages] == ["secret_read"]
    odd = clean_session(
        event("client", "reply", op="balance", reply={"ok": True, "balance": [1]}),
        event("attacker", "read", secret="balance", value=[1], how="in_the_clear", where="x"),
    )
    assert (
        decide(odd, TRUTH).verdict == "unaffected"
    )  # a forged, unhashable balance neither counts nor crashes
    offline = event("attacker", "read", secret="balance", value=900, how="decrypted_offline", where="x")
    assert [b.kind for b in decide(clean_session(offline), TRUTH).breakages] == ["recording_decrypted"]


def test_a_transfer_the_client_never_sent() -> None:
    run = clean_session(
        event("server", "transfer_executed", session="s1", seq=1, to_account="eve", amount=100)
    )
    assert [b.kind for b in decide(run, TRUTH).breakages] == ["transfer_altered"]


def test_a_transfer_executed_twice_in_one_session_and_in_a_replayed_one() -> None:
    twice = clean_session(
        event("server", "transfer_executed", session="s1", seq=2, to_account="bob", amount=100)
    )
    assert [b.kind for b in decide(twice, TRUTH).breakages] == ["transfer_executed_twice"]
    replayed = clean_session(
        event(
            "server", "session_opened", session="s2", suite="RSA_AES128_GCM", supported=[], client_random="c1"
        ),
        event("server", "transfer_executed", session="s2", seq=1, to_account="bob", amount=100),
    )
    assert [b.kind for b in decide(replayed, TRUTH).breakages] == ["transfer_replayed_in_new_session"]


def test_a_record_the_server_never_sent_and_a_forged_server() -> None:
    own = clean_session(event("client", "record_received", seq=1, plaintext="p-transfer"))
    [broken] = decide(own, TRUTH).breakages
    assert broken.kind == "message_not_from_server_accepted" and "its own" in broken.detail
    forged = clean_session(
        event(
            "client",
            "session_opened",
            suite="X",
            offered=[],
            client_random="c9",
            server_key="SHA256:attacker",
            server_subject="CN=attacker.lab",
        )
    )
    assert "forged_server_accepted" in [b.kind for b in decide(forged, TRUTH).breakages]


def test_a_weaker_suite_than_both_sides_support() -> None:
    verdict = decide(clean_session(suite="RSA_AES128_CTR"), TRUTH)
    [broken] = verdict.breakages
    assert broken.kind == "weaker_suite_negotiated" and "ECDHE_AES128_GCM" in broken.detail


def test_blocked_names_the_first_refusal_or_the_attackers_named_failure() -> None:
    run = clean_session(
        event(
            "server", "refusal", protection="mac", step="record", message="altered", error="RecordTampered"
        ),
        event("client", "refusal", protection="hostname", step="server_certificate", message="later"),
    )
    verdict = decide(run, TRUTH)
    assert (verdict.verdict, verdict.blocked_by, verdict.step, verdict.refused_by_role) == (
        "blocked",
        "mac",
        "record",
        "server",
    )
    passive = clean_session(
        event("attacker", "attack_failed", reason="encrypted", protection="encryption", step="record")
    )
    assert decide(passive, TRUTH).blocked_by == "encryption"
    nameless = clean_session(event("attacker", "attack_failed", reason="nothing to strip", protection=None))
    assert decide(nameless, TRUTH).verdict == "unaffected"


def test_lab_failures_are_errors_never_blocked_and_keep_what_was_found() -> None:
    crashed = clean_session(event("server", "refusal", protection="mac", step="record", message="m"))
    crashed.lab_error = "a role died: attacker (exit code -9)"
    verdict = decide(crashed, TRUTH)
    assert verdict.verdict == "error" and "attacker" in (verdict.error or "")
    buggy = clean_session(
        event("attacker", "addon_error", error="KeyError: x"),
        event("attacker", "read", secret="password", value="s3cret", how="in_the_clear", where="x"),
    )
    verdict = decide(buggy, TRUTH)
    assert verdict.verdict == "error" and [b.kind for b in verdict.breakages] == ["secret_read"]
    silent = clean_session()
    silent.client_outcome = "NoReply"
    assert decide(silent, TRUTH).verdict == "error"
