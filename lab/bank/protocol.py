"""The bank's messages: compact JSON, one per record, keys in a fixed order.

    client -> server                                           server -> client
    {"op":"login","user":"alice","password":"..."}            {"ok":true,"user":"alice"}
    {"op":"transfer","to":"bob","amount":100}                 {"ok":true,"transfer":7,"balance":900}
    {"op":"balance"}                                          {"ok":true,"balance":900}
                                                              {"ok":false,"error":"insufficient funds"}

The fixed layout is public, as protocol formats are: `bit-flip` relies on knowing where the recipient
sits in a transfer (TRANSFER_TO_OFFSET), not on knowing the key. An account name (`user`, `to`) is 1 to
MAX_NAME printable characters, on both ends: so every message, and a reply that repeats a name, fits in
one record of the lab channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

TRANSFER_PREFIX: Final = b'{"op":"transfer","to":"'
TRANSFER_TO_OFFSET: Final = len(TRANSFER_PREFIX)
"""Where the recipient's name starts in a transfer's plaintext."""


MAX_NAME: Final = 64
"""The longest account name, in characters (the bank's are short; a record carries 16 KiB)."""


class BankProtocolError(Exception):
    """A message that is not a well-formed bank message (garbled, truncated, unknown op)."""


def name_problem(name: str) -> str | None:
    """Why `name` can be no account name, or None."""
    if 1 <= len(name) <= MAX_NAME and name.isprintable():
        return None
    return f"an account name is 1 to {MAX_NAME} printable characters"


def _checked_name(field: str, name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise BankProtocolError(f"{field}: {problem}")
    return name


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode()


def login(user: str, password: str) -> bytes:
    return _encode({"op": "login", "user": _checked_name("login.user", user), "password": password})


def transfer(to: str, amount: int) -> bytes:
    return _encode({"op": "transfer", "to": _checked_name("transfer.to", to), "amount": amount})


def balance() -> bytes:
    return _encode({"op": "balance"})


def reply(**fields: Any) -> bytes:
    return _encode(fields)


@dataclass(frozen=True)
class Request:
    op: str
    fields: dict[str, Any]


def _decode_object(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BankProtocolError(f"not a bank message: {exc}") from None
    if not isinstance(message, dict):
        raise BankProtocolError("not a bank message: not a JSON object")
    return message


_REQUEST_FIELDS: Final[dict[str, dict[str, type]]] = {
    "login": {"user": str, "password": str},
    "transfer": {"to": str, "amount": int},
    "balance": {},
}
_NAME_FIELDS: Final = frozenset({"user", "to"})


def parse_request(data: bytes) -> Request:
    message = _decode_object(data)
    op = message.pop("op", None)
    if not isinstance(op, str) or op not in _REQUEST_FIELDS:
        raise BankProtocolError(f"unknown operation {op!r}")
    expected = _REQUEST_FIELDS[op]
    if set(message) != set(expected):
        raise BankProtocolError(f"{op} takes exactly the fields {sorted(expected)}")
    for name, kind in expected.items():
        if type(message[name]) is not kind:
            raise BankProtocolError(f"{op}.{name} must be {kind.__name__}")
    for name in _NAME_FIELDS.intersection(expected):
        _checked_name(f"{op}.{name}", message[name])
    return Request(op, message)


def parse_reply(data: bytes) -> dict[str, Any]:
    message = _decode_object(data)
    if not isinstance(message.get("ok"), bool):
        raise BankProtocolError("not a bank reply: no 'ok' field")
    return message
