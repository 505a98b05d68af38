"""The server role: the bank behind the lab channel, serving many connections at once, and the same bank
over real HTTPS (`lab.bank.web`), sharing its ledger.

A connection that misbehaves (garbage, an oversized frame, a stall, a refused record) gets its alert and
is closed; the others go on, and what the ledger and the evidence already hold stays.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, Final

from lab import events
from lab.bank.ledger import Ledger
from lab.bank.service import BankSession
from lab.bank.web import BankWeb
from lab.channel.connection import RecentClientHellos, ServerConfig, ServerConnection
from lab.channel.errors import ChannelError
from lab.channel.keylog import keylog_line
from lab.channel.protections import Protections
from lab.control import ControlError, Handler, protections_from_request
from lab.evidence import digest
from lab.net import WebPorts
from lab.roles.ssh_server import SshServer
from lab.roles.transport import DEFAULT_TIMEOUTS, ChannelStream, Timeouts
from lab.state import SERVER_NAME, StateDir


class BankServer:
    def __init__(
        self, state: StateDir, protections: Protections, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self.state = state
        self.ssh: SshServer | None = None
        """The SSH stack's real sshd, once `start_ssh` has tried it."""
        self.leaf = state.server_leaf()
        self.hellos = RecentClientHellos()
        self.config = ServerConfig(protections, self.leaf.chain, self.leaf.private_key, hellos=self.hellos)
        self.ledger = Ledger(state.ledger_path)
        self.evidence = state.evidence("server")
        self.web = BankWeb(
            lambda: self.ledger,
            self.evidence,
            server_name=SERVER_NAME,
            certificate=state.server_cert,
            key=state.server_key,
            crl=state.ca_crl,
        )
        self.timeouts = timeouts
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        self.evidence.record(
            events.Listening(host=host, port=bound, protections=self.config.protections.as_dict())
        )
        return bound

    async def start_web(self, host: str, https_port: int = 0, http_port: int = 0) -> WebPorts:
        """Serve the HTTPS bank too (port 0 picks a free one)."""
        return await self.web.start(host, https_port, http_port)

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        async with self._server:
            await self._server.serve_forever()

    async def stop(self, grace: float = 1.0) -> None:
        """Stop listening, give open sessions `grace` seconds to finish, then cut them off."""
        if self._server is not None:
            self._server.close()
        if self._sessions:
            _, unfinished = await asyncio.wait(self._sessions, timeout=grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        await self.web.stop()
        if self.ssh is not None:
            await self.ssh.stop()
        self.ledger.close()

    def set_protections(self, protections: Protections) -> None:
        """The protections for the connections that come next."""
        self.config = ServerConfig(protections, self.leaf.chain, self.leaf.private_key, hellos=self.hellos)

    async def start_ssh(self, host: str, port: int = 0) -> int | None:
        """The real sshd beside the bank (`lab.roles.ssh_server`): its port, or None where it cannot
        start here (`ssh_ready` then says why)."""
        self.ssh = SshServer(self.state, self.evidence, self.state.root / "server" / "sshd")
        return await self.ssh.start(host, port)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no session is open; what sshd saw meanwhile is in the evidence."""
        async with asyncio.timeout(timeout):
            while self._sessions:
                await asyncio.wait(set(self._sessions))
        if self.ssh is not None:
            self.ssh.take()

    async def reset(self) -> None:
        """A fresh bank and no evidence, between scenarios (see `StateDir.reset`)."""
        await self.idle()
        if self.ssh is not None:
            self.ssh.reset()
        self.ledger.close()
        self.state.reset_role("server")
        self.ledger = Ledger(self.state.ledger_path)
        self.hellos = RecentClientHellos()
        self.web.reset()
        self.set_protections(self.config.protections)

    def control_handlers(self) -> dict[str, Handler]:
        async def configure(request: dict[str, Any]) -> dict[str, Any]:
            public_https_port = request.get("public_https_port")
            if public_https_port is not None and not isinstance(public_https_port, int):
                raise ControlError('"public_https_port" is the HTTPS port bank.lab has for the client')
            self.set_protections(protections_from_request(request))
            self.web.public_https_port = public_https_port
            return {"protections": self.config.protections.as_dict()}

        async def reset(request: dict[str, Any]) -> dict[str, Any]:
            await self.reset()
            return {}

        async def idle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                await self.idle(float(request.get("timeout", 30)))
            except TimeoutError:
                raise ControlError("sessions still open after the timeout") from None
            return {}

        async def status(request: dict[str, Any]) -> dict[str, Any]:
            return {"protections": self.config.protections.as_dict(), "open_sessions": len(self._sessions)}

        async def ssh_ready(request: dict[str, Any]) -> dict[str, Any]:
            """Whether the SSH stack's sshd serves (`lab.roles.ssh_server`), and why not."""
            if self.ssh is None:
                why = "this server role runs no sshd (it was started without --service ssh=PORT)"
                return {"ready": False, "why": why, "not_here": True}
            return self.ssh.status()

        async def lab_keylog(request: dict[str, Any]) -> dict[str, Any]:
            return {"lab_keylog": self.state.take_lab_keylog("server")}

        return {
            "configure": configure,
            "reset": reset,
            "idle": idle,
            "status": status,
            "lab_keylog": lab_keylog,
            "ssh_ready": ssh_ready,
        }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        session = secrets.token_hex(6)
        peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        stream = ChannelStream(ServerConnection(self.config), reader, writer)
        try:
            await self._converse(stream, session, peer)
        except ChannelError as error:
            self.evidence.channel_error(error, session=session)
        except asyncio.CancelledError:
            self.evidence.record(events.SessionCut(session=session, reason="the server is stopping"))
        except Exception as error:  # a lab bug: keep serving the others, and say so in the evidence
            self.evidence.record(
                events.InternalError(session=session, error=f"{type(error).__name__}: {error}")
            )
        finally:
            stream.writer.close()

    async def _converse(self, stream: ChannelStream, session: str, peer: str) -> None:
        evidence = self.evidence
        done = await stream.handshake(self.timeouts.handshake)
        self.state.log_lab_keys("server", keylog_line("server", done))
        evidence.record(
            events.ServerSessionOpened(
                session=session,
                peer=peer,
                suite=done.suite.name,
                offered=[s.name for s in done.offered],
                supported=[s.name for s in done.supported],
                client_random=done.client_random.hex(),
                server_random=done.server_random.hex(),
            )
        )
        bank = BankSession(self.ledger, session)
        while (record := await stream.receive(self.timeouts.idle)) is not None:
            evidence.record(
                events.ServerRecordReceived(
                    session=session,
                    seq=record.seq,
                    plaintext=digest(record.data),
                    frame=digest(record.frame.encode()),
                    size=len(record.data),
                )
            )
            outcome = bank.handle(record.data, record.seq)
            evidence.record(
                events.Request(session=session, seq=record.seq, op=outcome.op, error=outcome.error)
            )
            if outcome.transfer is not None:
                t = outcome.transfer
                evidence.record(
                    events.TransferExecuted(
                        session=session,
                        seq=record.seq,
                        transfer=t.id,
                        from_account=t.from_account,
                        to=t.to_account,
                        amount=t.amount,
                    )
                )
            sent = await stream.send(outcome.reply)
            evidence.record(
                events.ServerRecordSent(
                    session=session, seq=sent.seq, plaintext=digest(outcome.reply), frame=digest(sent.frame)
                )
            )
        evidence.record(events.SessionClosed(session=session))


ANY_PORTS: Final = WebPorts(0, 0)


async def run_server(
    state: StateDir,
    host: str,
    port: int,
    protections: Protections,
    *,
    web: WebPorts = ANY_PORTS,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    on_ready: Callable[[int, WebPorts], None] | None = None,
) -> None:
    server = BankServer(state, protections, timeouts)
    bound = await server.start(host, port)
    try:
        bound_web = await server.start_web(host, web.https, web.http)
    except OSError:
        await server.stop()
        raise
    if on_ready is not None:
        on_ready(bound, bound_web)
    try:
        await server.serve_forever()
    finally:
        await server.stop()
