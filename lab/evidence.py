"""Structured evidence: every role appends what it saw as JSON lines; verdicts are computed from these.

One line per event: `{"ts": ..., "role": "server", "event": "transfer_executed", ...}`. Lines are
written and flushed one at a time, so a role that dies keeps everything it recorded before.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from lab.channel.errors import ChannelError, PeerRefused, Refusal


def digest(data: bytes) -> str:
    """The short digest that evidence uses to match the same bytes across roles."""
    return hashlib.sha256(data).hexdigest()[:32]


class EvidenceLog:
    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: str, **fields: Any) -> None:
        entry = {
            "ts": datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
            "role": self.role,
            "event": event,
            **fields,
        }
        line = (json.dumps(entry, default=_jsonable, ensure_ascii=False) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write of a whole line with O_APPEND: lines never interleave
            finally:
                os.close(fd)

    def channel_error(self, error: ChannelError, **context: Any) -> None:
        """One line for a channel error, with the fields the checker attributes blocks from."""
        if isinstance(error, Refusal):
            self.record(
                "refusal",
                protection=error.protection,
                step=error.step,
                message=error.message,
                error=type(error).__name__,
                **context,
            )
        elif isinstance(error, PeerRefused):
            self.record(
                "peer_refused", protection=error.protection, step=error.step, message=error.message, **context
            )
        else:
            self.record(
                "protocol_error",
                step=error.step,
                message=error.message,
                error=type(error).__name__,
                **context,
            )


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


async def follow(path: Path, poll: float = 0.2) -> AsyncIterator[dict[str, Any]]:
    """Events as they are appended to `path` (from its current end), like `tail -f`."""
    offset = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        if path.exists() and path.stat().st_size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read()
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                with contextlib.suppress(json.JSONDecodeError):
                    yield json.loads(line)
        await asyncio.sleep(poll)


def read_evidence(path: Path) -> Iterator[dict[str, Any]]:
    """Every event in a file; a torn last line (a role killed mid-write) is skipped, not fatal."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
