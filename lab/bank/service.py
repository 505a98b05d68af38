"""The bank's side of one session: log in first, then transfers and balance requests."""

from __future__ import annotations

from dataclasses import dataclass

from lab.bank import protocol
from lab.bank.ledger import BankError, Ledger, Transfer


@dataclass(frozen=True)
class Outcome:
    reply: bytes
    op: str | None = None
    """The request's operation, None when the message was not a bank request."""
    transfer: Transfer | None = None
    error: str | None = None


class BankSession:
    def __init__(self, ledger: Ledger, session_id: str) -> None:
        self.ledger = ledger
        self.session_id = session_id
        self.user: str | None = None

    def handle(self, data: bytes, record_seq: int) -> Outcome:
        try:
            request = protocol.parse_request(data)
        except protocol.BankProtocolError as exc:
            return Outcome(protocol.reply(ok=False, error=str(exc)), error=str(exc))
        try:
            return self._execute(request, record_seq)
        except BankError as exc:
            return Outcome(protocol.reply(ok=False, error=str(exc)), op=request.op, error=str(exc))

    def _execute(self, request: protocol.Request, record_seq: int) -> Outcome:
        fields = request.fields
        if request.op == "login":
            self.ledger.authenticate(fields["user"], fields["password"])
            self.user = fields["user"]
            return Outcome(protocol.reply(ok=True, user=self.user), op="login")
        if self.user is None:
            raise BankError("log in first")
        if request.op == "transfer":
            transfer = self.ledger.transfer(
                session=self.session_id,
                record_seq=record_seq,
                from_account=self.user,
                to_account=fields["to"],
                amount=fields["amount"],
            )
            balance = self.ledger.balance(self.user)
            return Outcome(
                protocol.reply(ok=True, transfer=transfer.id, balance=balance),
                op="transfer",
                transfer=transfer,
            )
        return Outcome(protocol.reply(ok=True, balance=self.ledger.balance(self.user)), op="balance")
