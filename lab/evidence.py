"""The evidence files: every role appends the events it saw (`lab.events`); verdicts are computed from them.

One JSON line per event. Lines are written and flushed one at a time, so a role that dies keeps
everything it recorded before; reading validates every line against the role's schema.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import msgspec

from lab.channel import errors
from lab.events import EVENTS, Event, EvidenceError, PeerRefused, ProtocolError, Refusal, decode, encode

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
"""How a role's evidence is opened: 0600 and never through a link, for its lines hold the customer's
password (what the client sent, what the attacker read)."""


def digest(data: bytes) -> str:
    """The short digest that evidence uses to match the same bytes across roles."""
    return hashlib.sha256(data).hexdigest()[:32]


def now() -> str:
    """The moment, as evidence stamps it (ISO 8601, UTC, microseconds)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


class EvidenceLog:
    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self._allowed = EVENTS[role]
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def record(self, event: Event) -> None:
        """One line for `event`, stamped now, unless it carries its own moment (`now()` taken earlier:
        what a role did before it could say what it was, such as a record it sent)."""
        if type(event) not in self._allowed:
            raise TypeError(f"{type(event).__name__} is not an event the {self.role} records")
        stamped = msgspec.structs.replace(event, ts=event.ts or now(), role=self.role)
        line = encode(stamped) + b"\n"
        with self._lock:
            fd = os.open(self.path, _APPEND, 0o600)
            try:
                os.write(fd, line)  # one write of a whole line with O_APPEND: lines never interleave
            finally:
                os.close(fd)

    def channel_error(self, error: errors.ChannelError, session: str | None = None) -> None:
        """One line for a channel error, with the fields the checker attributes blocks from."""
        if isinstance(error, errors.Refusal):
            self.record(
                Refusal(
                    protection=error.protection,
                    step=error.step,
                    message=error.message,
                    error=type(error).__name__,
                    session=session,
                )
            )
        elif isinstance(error, errors.PeerRefused):
            self.record(
                PeerRefused(
                    protection=error.protection, step=error.step, message=error.message, session=session
                )
            )
        else:
            self.record(
                ProtocolError(
                    step=error.step, message=error.message, error=type(error).__name__, session=session
                )
            )


def evidence_lines(path: Path) -> list[str]:
    """The file's whole lines as written; a torn last line (a role killed mid-write) is left out."""
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # after the last newline: nothing, or a torn line


def parse_lines(
    role: str, lines: list[str], protections: Collection[str]
) -> tuple[list[Event], list[EvidenceError]]:
    """Every line checked against `role`'s schema, and any protection it names against `protections`
    (the stacks' ids, which the checker knows): the events, and an error for each line that is not one."""
    parsed: list[Event] = []
    bad: list[EvidenceError] = []
    for number, line in enumerate(lines, start=1):
        try:
            event = decode(role, line.encode(), number)
        except EvidenceError as error:
            bad.append(error)
            continue
        protection = getattr(event, "protection", None)
        if protection is not None and protection not in protections:
            bad.append(EvidenceError(role, number, f"{protection!r} is no protection id"))
        else:
            parsed.append(event)
    return parsed, bad


async def follow(path: Path, role: str, poll: float = 0.2) -> AsyncIterator[Event | EvidenceError]:
    """Events as they are appended to `path` (from its current end), like `tail -f`; a line that does
    not validate comes as its `EvidenceError`, for the follower to say so and go on."""
    offset = path.stat().st_size if path.exists() else 0
    pending = b""
    number = 0
    while True:
        if path.exists() and path.stat().st_size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read()
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                number += 1
                try:
                    yield decode(role, line, number)
                except EvidenceError as error:
                    yield error
        await asyncio.sleep(poll)
