"""The roles' control port: one JSON object per line over TCP, request then response.

    -> {"cmd": "attack", "secret": "...", "id": "replay", "options": {"lab_replay_record": 1}}
    <- {"ok": true, "attack": "replay"}
    -> hello?
    <- {"ok": false, "error": "not JSON: ..."}

Every request carries the lab's secret (made with the state directory, in a file only its owner can
read): on a shared host, anyone can reach 127.0.0.1, but only the lab's owner may reset its bank or
switch its attack. A request without it is refused, and the refusal reported to `on_refused`.
Anything malformed gets an error answer and the connection stays usable; a line over MAX_LINE bytes
closes that connection. A handler's `ControlError` becomes an error answer; the role keeps running.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lab.channel.protections import NONE, Protections, UnknownProtectionError

MAX_LINE = 64 * 1024
MAX_ANSWER = 64 * 1024 * 1024
"""A run's evidence comes back as one answer."""

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RefusedHook = Callable[[str, str], None]
"""Called with the peer's address and the command of a request that lacked the secret."""


class ControlError(Exception):
    """A control request that cannot be carried out; its message is the answer's error."""


class NoAnswer(ControlError):
    """The role closed the connection or sent garbage instead of an answer (it may be going down)."""


class ControlServer:
    def __init__(
        self, handlers: Mapping[str, Handler], *, secret: str, on_refused: RefusedHook | None = None
    ) -> None:
        if not secret:
            raise ValueError("a control port needs the lab's secret")
        self.handlers = dict(handlers)
        self.secret = secret
        self.on_refused = on_refused
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._answer(writer, {"ok": False, "error": f"line longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                peername = writer.get_extra_info("peername")
                peer = "{}:{}".format(*peername[:2]) if peername else "-"
                await self._answer(writer, await self.handle(line, peer))
        except ConnectionError:
            return
        except Exception as exc:  # whatever a peer sends, the port keeps serving the others
            print(f"control connection closed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            writer.close()

    async def handle(self, line: bytes, peer: str = "-") -> dict[str, Any]:
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
            if self.on_refused is not None:
                self.on_refused(peer, request["cmd"][:80].encode("ascii", "backslashreplace").decode())
            return {"ok": False, "error": "refused: the request does not carry this lab's secret"}
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

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
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
    """Send one control request and return the answer; raises ControlError for an error answer."""
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow an outer cancellation (the
    # runner's scenario timeout) when the inner call completes at the same moment.
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_ANSWER)
    try:
        writer.write(json.dumps({"cmd": cmd, "secret": secret, **(params or {})}).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await writer.drain()
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                raise ControlError(f"the answer to {cmd!r} is over {MAX_ANSWER} bytes") from None
    finally:
        writer.close()
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NoAnswer(f"no answer to {cmd!r}: the role closed the connection or sent garbage") from None
    if not isinstance(answer, dict):
        raise NoAnswer(f"no answer to {cmd!r}: not a JSON object")
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "error"))
    return answer
