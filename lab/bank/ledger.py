"""The bank's books in SQLite: accounts, and an append-only ledger of executed transfers.

Each transfer records the server's session id and the record sequence number it arrived in, so the
evidence shows a transfer executed twice (replay) or in a session the client never opened
(session-replay). Triggers refuse any UPDATE or DELETE on the ledger.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    password_hash BLOB NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    record_seq INTEGER NOT NULL,
    from_account TEXT NOT NULL REFERENCES accounts(name),
    to_account TEXT NOT NULL REFERENCES accounts(name),
    amount INTEGER NOT NULL CHECK (amount > 0),
    executed_at TEXT NOT NULL
);
CREATE TRIGGER transfers_no_update BEFORE UPDATE ON transfers
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


class BankError(Exception):
    """A request the bank declines: bad credentials, unknown account, insufficient funds."""


@dataclass(frozen=True)
class Transfer:
    id: int
    session: str
    record_seq: int
    from_account: str
    to_account: str
    amount: int
    executed_at: str


@functools.lru_cache(maxsize=16)
def _hash_password(password: str, salt: bytes) -> bytes:
    """scrypt with modest parameters. A check logs the same customer in hundreds of times a minute, each
    login about 10 ms of scrypt: the last few results stay in the server's memory (which holds the
    hashes anyway), so a repeated login costs a lookup. A new password or salt is always derived."""
    return hashlib.scrypt(password.encode(), salt=salt, n=2**12, r=8, p=1)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA busy_timeout = 5000")

    @classmethod
    def create(cls, path: Path, accounts: Mapping[str, tuple[str, int]]) -> None:
        """A fresh bank file with `accounts`: name -> (password, opening balance), which only its owner
        can read. SQLite would make it with the umask (0644); it keeps the mode of a file that is there,
        and gives its journals the same."""
        path.unlink(missing_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(path)
        try:
            db.executescript(SCHEMA)
            for name, (password, balance) in accounts.items():
                salt = os.urandom(16)
                db.execute(
                    "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                    (name, salt, _hash_password(password, salt), balance),
                )
            db.commit()
        finally:
            db.close()

    def close(self) -> None:
        self._db.close()

    def authenticate(self, name: str, password: str) -> None:
        row = self._db.execute("SELECT salt, password_hash FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None or not hmac.compare_digest(_hash_password(password, row[0]), row[1]):
            raise BankError("wrong user name or password")

    def balance(self, name: str) -> int:
        row = self._db.execute("SELECT balance FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise BankError(f"no account {name!r}")
        balance: int = row[0]
        return balance

    def transfer(
        self, *, session: str, record_seq: int, from_account: str, to_account: str, amount: int
    ) -> Transfer:
        if amount <= 0:
            raise BankError("the amount must be positive")
        if from_account == to_account:
            raise BankError("cannot transfer to the same account")
        executed_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (to_account,)).fetchone() is None:
                raise BankError(f"no account {to_account!r}")
            if self.balance(from_account) < amount:
                raise BankError("insufficient funds")
            db.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, from_account))
            db.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?", (amount, to_account))
            cursor = db.execute(
                "INSERT INTO transfers (session, record_seq, from_account, to_account, amount, executed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session, record_seq, from_account, to_account, amount, executed_at),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        assert cursor.lastrowid is not None
        return Transfer(cursor.lastrowid, session, record_seq, from_account, to_account, amount, executed_at)

    def transfers(self) -> list[Transfer]:
        rows = self._db.execute(
            "SELECT id, session, record_seq, from_account, to_account, amount, executed_at "
            "FROM transfers ORDER BY id"
        ).fetchall()
        return [Transfer(*row) for row in rows]
