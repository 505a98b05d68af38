"""The roles' control port: one JSON object per line over TCP, request then response.

    -> {"cmd": "attack", "secret": "...", "id": "replay", "options": {"lab_replay_record": 1}}
    <- {"ok": true, "attack": "replay"}
    -> hello?
    <- {"ok": false, "error": "not JSON: ..."}

Every request carries the lab's secret (made with the state directory, in a file only its owner can
read): on a shared host, anyone can reach 127.0.0.1, but only the lab's owner may reset its bank or
switch its attack. A request without it is refused; the first few refusals between two of the owner's
requests are reported to `on_refused` one by one, the rest as one count (REFUSALS_ONE_BY_ONE).
Anything malformed gets an error answer and the connection stays usable; a line over MAX_LINE bytes
closes that connection, as does a peer that keeps the port waiting (IDLE_TIMEOUT). A handler's
`ControlError` becomes an error answer; the role keeps running. Someone without the secret cannot hold
the port full (MAX_CONNECTIONS), and many lines from one peer do not hold up the owner's request: each
line served yields to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lab.channel.protections import NONE, Protections, UnknownProtectionError
from lab.events import ControlRefusalsCounted, ControlRefused

MAX_LINE = 64 * 1024
MAX_ANSWER = 64 * 1024 * 1024
"""A run's evidence comes back as one answer."""
MAX_CONNECTIONS = 256
"""Connections open at once, each a socket of the role's (of the 1024 a process may usually open). The
runner has two open to a role at most; past the cap a new connection closes the oldest one that is not
carrying out one of the owner's requests, so that connections held by someone without the secret do not
lock the owner out. Over twice what asyncio accepts in one go (its listen backlog, 100), so that a burst
of new connections does not close the owner's before its request is read (at 64, 2 of 181 were)."""
IDLE_TIMEOUT = 10.0
KEPT_AT_MOST = IDLE_TIMEOUT / 2
"""A kept connection idle this long is not used again (`Connections`): its role closes it at IDLE_TIMEOUT."""
"""Seconds the port waits on a peer, for a whole request line or for it to take its answer. The owner's
client sends its line as it connects; a peer that sends nothing, or half a line, is closed."""
REFUSALS_ONE_BY_ONE = 5
"""Refused requests reported one by one between two of the owner's requests; the rest are counted, and
the count reported once, with the first hosts they came from. Anyone on the host can send refused
requests as fast as the role answers them (330,000 in 13 s), and a line in the evidence for each made it
too large for the owner to take (over MAX_ANSWER); five say who knocked, and with what."""

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Refused = ControlRefused | ControlRefusalsCounted
RefusedHook = Callable[[Refused], None]
"""Called with each refusal reported one by one, and with the count of the others."""


class ControlError(Exception):
    """A control request that cannot be carried out; its message is the answer's error."""


class NoAnswer(ControlError):
    """The role closed the connection or sent garbage instead of an answer (it may be going down)."""


class _Refusals:
    """The requests refused since the owner's last: the first REFUSALS_ONE_BY_ONE reported as they come,
    the others counted until the owner's next request (or the port's end) reports them as one."""

    def __init__(self, report: RefusedHook | None) -> None:
        self._report = report
        self.one_by_one = 0
        self.counted = 0
        self.hosts: dict[str, None] = {}
        """The first hosts the counted ones came from (a dict as an ordered set)."""

    def refused(self, host: str, peer: str, cmd: str) -> None:
        if self.one_by_one < REFUSALS_ONE_BY_ONE:
            self.one_by_one += 1
            if self._report is not None:
                self._report(ControlRefused(peer=peer, cmd=cmd))
            return
        self.counted += 1
        if len(self.hosts) < REFUSALS_ONE_BY_ONE:
            self.hosts[host] = None

    def report_counted(self) -> None:
        """Report the count, and report the next refusals one by one again."""
        if self.counted and self._report is not None:
            self._report(ControlRefusalsCounted(count=self.counted, peers=list(self.hosts)))
        self.one_by_one = self.counted = 0
        self.hosts.clear()


class ControlServer:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        secret: str,
        on_refused: RefusedHook | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if not secret:
            raise ValueError("a control port needs the lab's secret")
        self.handlers = dict(handlers)
        self.secret = secret
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._refusals = _Refusals(on_refused)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}
        """Every open connection, oldest first, with the task that serves it."""
        self._busy: set[asyncio.StreamWriter] = set()
        """The connections carrying out one of the owner's requests: never closed to make room."""

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening, close the connections that wait on their peer, report the refusals counted."""
        if self._server is not None:
            self._server.close()
        waiting = [writer for writer in self._connections if writer not in self._busy]
        for writer in waiting:
            writer.transport.abort()
        tasks = [task for writer in waiting if (task := self._connections.get(writer)) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.idle_timeout)
        self._refusals.report_counted()

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        """Room for a new connection: at the cap, the oldest one that waits on its peer is closed."""
        if len(self._connections) >= self.max_connections:
            oldest = next((w for w in self._connections if w not in self._busy), None)
            if oldest is None:  # every one carries out a request of the owner's
                busy = {"ok": False, "error": f"busy: {self.max_connections} requests under way"}
                writer.write(json.dumps(busy).encode() + b"\n")
                writer.close()
                return False
            oldest.transport.abort()
            del self._connections[oldest]
        self._connections[writer] = asyncio.current_task()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit(writer):
            return
        peername = writer.get_extra_info("peername")
        host, peer = (str(peername[0]), "{}:{}".format(*peername[:2])) if peername else ("-", "-")
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._answer(writer, {"ok": False, "error": f"line longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                self._busy.add(writer)  # only the owner's requests wait on anything in there
                try:
                    answer = await self.handle(line, host, peer)
                finally:
                    self._busy.discard(writer)
                await self._answer(writer, answer)
                await asyncio.sleep(0)  # many lines already read must not keep the others waiting
        except (ConnectionError, TimeoutError):
            return
        except Exception as exc:  # whatever a peer sends, the port keeps serving the others
            print(f"control connection closed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            self._connections.pop(writer, None)
            writer.close()

    async def handle(self, line: bytes, host: str, peer: str) -> dict[str, Any]:
        """The answer to one request line from `peer` (`host:port`)."""
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is a JSON object with a "cmd" string'}
        offered = request.pop("secret", None)
        if not isinstance(offered, str) or not hmac.compare_digest(
            offered.encode("utf-8", "surrogatepass"), self.secret.encode()
        ):
            cmd = request["cmd"][:80].encode("ascii", "backslashreplace").decode()
            self._refusals.refused(host, peer, cmd)
            return {"ok": False, "error": "refused: the request does not carry this lab's secret"}
        self._refusals.report_counted()  # before the handler: an `evidence` take includes the count
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return {
                "ok": False,
                "error": f"unknown command {request['cmd']!r}; commands: {', '.join(self.handlers)}",
            }
        try:
            return {"ok": True, **await handler(request)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in the role: answer with it, and keep serving
            return {"ok": False, "error": f"the role failed: {type(exc).__name__}: {exc}"}

    async def _answer(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        async with asyncio.timeout(self.idle_timeout):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()


def protections_from_request(request: dict[str, Any]) -> Protections:
    """The `protections` field of a request: an object of protection id -> bool over `none`."""
    switches = request.get("protections")
    if not isinstance(switches, dict) or not all(isinstance(v, bool) for v in switches.values()):
        raise ControlError('"protections" must be an object of protection id -> true/false')
    try:
        return NONE.with_switches(switches)
    except UnknownProtectionError as exc:
        raise ControlError(str(exc)) from None


async def request(
    host: str,
    port: int,
    cmd: str,
    params: dict[str, Any] | None = None,
    *,
    secret: str,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send one control request, on a connection of its own, and return the answer; raises
    ControlError for an error answer."""
    connections = Connections()
    try:
        return await connections.request(host, port, cmd, params, secret=secret, timeout=timeout)
    finally:
        connections.close()


class Connections:
    """`request`, on connections kept between requests: a control port answers any number of requests
    on one connection. A connection is kept, once its answer is in, for the next request to the same
    port (a request made while another is under way opens one more); `close` ends them all. A fresh
    loopback connection for each of a run's requests cost the checker more than the requests did
    (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        """Connections whose answer is in, each with when it came (monotonic)."""
        self._open: set[asyncio.StreamWriter] = set()

    async def request(
        self,
        host: str,
        port: int,
        cmd: str,
        params: dict[str, Any] | None = None,
        *,
        secret: str,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        line = _request_line(cmd, params, secret)
        answer = b""
        kept = self._take_kept((host, port))
        if kept is not None:
            with contextlib.suppress(ConnectionError):
                answer = await self._exchange_keeping((host, port), kept, line, cmd, timeout)
        if not answer:  # none kept, or its role closed it unread (idle, or to make room): a new one
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow an outer cancellation
            # (the runner's scenario timeout) when the inner call completes at the same moment.
            async with asyncio.timeout(timeout):
                fresh = await asyncio.open_connection(host, port, limit=MAX_ANSWER)
            self._open.add(fresh[1])
            answer = await self._exchange_keeping((host, port), fresh, line, cmd, timeout)
        return _answer(answer, cmd)

    def close(self) -> None:
        for writer in self._open:
            writer.close()
        self._open.clear()
        self._kept.clear()

    def _take_kept(self, port: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        kept = self._kept.get(port, [])
        while kept:
            since, reader, writer = kept.pop()
            if time.monotonic() - since < KEPT_AT_MOST and not reader.at_eof():
                return reader, writer
            self._close(writer)
        return None

    async def _exchange_keeping(
        self,
        port: tuple[str, int],
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        line: bytes,
        cmd: str,
        timeout: float,
    ) -> bytes:
        reader, writer = connection
        answer = b""
        try:
            answer = await _exchange(reader, writer, line, cmd, timeout)
        finally:
            if answer.endswith(b"\n"):
                self._kept.setdefault(port, []).append((time.monotonic(), reader, writer))
            else:  # cut short (a timeout, the end, the role gone): an answer may come, to nobody
                self._close(writer)
        return answer

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()


def _request_line(cmd: str, params: dict[str, Any] | None, secret: str) -> bytes:
    return json.dumps({"cmd": cmd, "secret": secret, **(params or {})}).encode() + b"\n"


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, cmd: str, timeout: float
) -> bytes:
    """The answer line to the request `line` (empty if the role closed the connection first)."""
    writer.write(line)
    async with asyncio.timeout(timeout):
        await writer.drain()
        try:
            return await reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            raise ControlError(f"the answer to {cmd!r} is over {MAX_ANSWER} bytes") from None


def _answer(line: bytes, cmd: str) -> dict[str, Any]:
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NoAnswer(f"no answer to {cmd!r}: the role closed the connection or sent garbage") from None
    if not isinstance(answer, dict):
        raise NoAnswer(f"no answer to {cmd!r}: not a JSON object")
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "error"))
    return answer
