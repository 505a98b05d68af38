"""The bank on a real SQLite file: the ledger is append-only, a failed transfer changes nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lab.bank import protocol
from lab.bank.ledger import BankError, Ledger
from lab.bank.service import BankSession
from lab.state import StateDir


def test_ledger_refuses_update_and_delete(state: StateDir) -> None:
    ledger = Ledger(state.ledger_path)
    ledger.transfer(session="s1", record_seq=1, from_account="alice", to_account="bob", amount=10)
    db = sqlite3.connect(state.ledger_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE transfers SET amount = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM transfers")
    assert [t.amount for t in ledger.transfers()] == [10]


@pytest.mark.parametrize(
    ("to", "amount", "message"),
    [
        ("bob", 5000, "insufficient funds"),
        ("nobody", 5, "no account"),
        ("alice", 5, "same account"),
        ("bob", 0, "positive"),
    ],
)
def test_a_declined_transfer_changes_nothing(state: StateDir, to: str, amount: int, message: str) -> None:
    ledger = Ledger(state.ledger_path)
    with pytest.raises(BankError, match=message):
        ledger.transfer(session="s", record_seq=1, from_account="alice", to_account=to, amount=amount)
    assert ledger.transfers() == []
    assert (ledger.balance("alice"), ledger.balance("bob")) == (1000, 1000)


def test_passwords_are_stored_hashed(state: StateDir) -> None:
    password = state.client_password()
    assert password.encode() not in state.ledger_path.read_bytes()
    Ledger(state.ledger_path).authenticate("alice", password)
    with pytest.raises(BankError):
        Ledger(state.ledger_path).authenticate("alice", password + "x")


@pytest.mark.parametrize(
    "message",
    [
        b"\xff\xfe",
        b"[1,2]",
        b'{"op":"steal"}',
        b'{"op":"transfer","to":"bob","amount":"100"}',
        b'{"op":"transfer","to":"bob"}',
        b'{"op":"balance","extra":1}',
        b"",
        b'{"op":[1]}',
        b'{"op":{}}',
    ],
)
def test_malformed_requests_get_an_error_reply_and_execute_nothing(state: StateDir, message: bytes) -> None:
    session = BankSession(Ledger(state.ledger_path), "s")
    session.handle(protocol.login("alice", state.client_password()), 0)
    outcome = session.handle(message, 1)
    assert json.loads(outcome.reply)["ok"] is False
    assert outcome.transfer is None and outcome.error


def test_nothing_before_login(state: StateDir) -> None:
    outcome = BankSession(Ledger(state.ledger_path), "s").handle(protocol.transfer("bob", 1), 0)
    assert outcome.error == "log in first" and outcome.transfer is None


def test_the_transfer_layout_is_what_bit_flip_relies_on() -> None:
    message = protocol.transfer("bob", 100)
    offset = protocol.TRANSFER_TO_OFFSET
    assert message[offset : offset + 3] == b"bob"
