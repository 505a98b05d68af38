"""The HTTPS bank: the lab channel's bank (the same SQLite ledger) as an HTTP API over real TLS.

    GET  /            the login page: a form that posts to https://bank.lab/login
    POST /login       user, password -> 303 to /balance with a `Secure; HttpOnly` session cookie
    GET  /balance     the account's balance (needs the cookie)
    POST /transfer    to, amount (needs the cookie)

Every TLS response carries HSTS. The plain-HTTP front door answers `GET /ca.crl` (the lab CA's CRL,
published inside the lab) and redirects everything else to HTTPS (308, so a POST stays a POST): the
first request a browser makes to `bank.lab`, and the one sslstrip keeps on plain HTTP. A client that
knows bank.lab by HSTS upgrades its `http://bank.lab:PORT/` to `https://bank.lab:PORT/`, keeping the
port (curl and Chromium both do), so the front door also answers TLS: it looks at the first byte and
hands a TLS connection to the HTTPS listener untouched.

aiohttp (docs/tls.md says why): an established asyncio HTTP server, so the bank runs in the server
role's own event loop beside the lab channel and shares its ledger, with TLS from the standard
library's `ssl` (the lab PKI's certificate) and cookies, forms and redirects done for us.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from lab import events
from lab.bank.ledger import BankError, Ledger
from lab.evidence import EvidenceLog, digest
from lab.net import WebPorts, pipe

SESSION_COOKIE: Final = "session"
HSTS: Final = "max-age=31536000"
TLS_HANDSHAKE_BYTE: Final = 0x16
"""A TLS record of type handshake: how the front door tells a ClientHello from an HTTP request."""

LOGIN_PAGE: Final = """<!doctype html>
<title>bank.lab</title>
<h1>bank.lab</h1>
<form method="post" action="{action}">
<input name="user" autocomplete="username"> <input name="password" type="password">
<button>Log in</button>
</form>
<script>
// The lab's stand-in for a user typing (or a password manager filling in): what follows # in the
// address never goes on the wire, so the password leaves the browser only when the form is submitted.
const typed = new URLSearchParams(location.hash.slice(1));
if (typed.has("password")) {{
  for (const [name, value] of typed) document.forms[0].elements[name].value = value;
  document.forms[0].submit();
}}
</script>
"""

BALANCE_PAGE: Final = """<!doctype html>
<title>bank.lab: balance</title>
<p id="balance">{user}: {balance}</p>
<p>Loaded over <span id="scheme">?</span></p>
<script>document.getElementById("scheme").textContent = location.protocol;</script>
"""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BankWeb:
    """The bank's HTTP API. `ledger` is asked for the ledger on every request: the server role opens
    a fresh one on `reset`. The server role, which owns the state directory, names the files: the
    certificate and key served over TLS (PEM) and the CA's CRL published on the front door, each read
    when used; `server_name` is where the front door redirects a request that names no host."""

    def __init__(
        self,
        ledger: Callable[[], Ledger],
        evidence: EvidenceLog,
        *,
        server_name: str,
        certificate: Path,
        key: Path,
        crl: Path,
    ) -> None:
        self.server_name = server_name
        self.certificate = certificate
        self.key = key
        self.crl = crl
        self.ledger = ledger
        self.evidence = evidence
        self.public_https_port: int | None = None
        """The HTTPS port the front door redirects to: the bank's own unless the client reaches bank.lab
        through someone else's port (the runner sets the attacker's, which is bank.lab to the client)."""
        self._sessions: dict[str, str] = {}
        """Session cookie -> the user it logged in."""
        self._requests = 0
        self._runners: list[web.AppRunner] = []
        self._front_door: asyncio.Server | None = None
        self._splices: set[asyncio.Task[None]] = set()
        self.ports: WebPorts | None = None

    def reset(self) -> None:
        """No one logged in (between scenarios)."""
        self._sessions.clear()
        self._requests = 0

    # The two applications ---------------------------------------------------------------------------

    def _https_app(self) -> web.Application:
        app = web.Application(middlewares=[self._recorded(tls=True), _hsts])
        app.router.add_get("/", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_get("/balance", self._balance)
        app.router.add_post("/transfer", self._transfer)
        return app

    def _http_app(self) -> web.Application:
        app = web.Application(middlewares=[self._recorded(tls=False)])
        app.router.add_get("/ca.crl", self._crl)
        app.router.add_route("*", "/{tail:.*}", self._to_https)
        return app

    def _recorded(self, *, tls: bool) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:  # a lab bug: say so in the evidence, answer 500, keep serving
                self.evidence.record(events.InternalError(error=f"{type(exc).__name__}: {exc}"))
                raise web.HTTPInternalServerError(text="the bank failed") from None
            finally:
                cookie = request.cookies.get(SESSION_COOKIE)
                self.evidence.record(
                    events.WebRequest(
                        peer=request.remote or "?",
                        tls=tls,
                        method=request.method,
                        path=request.path,
                        status=status,
                        session=digest(cookie.encode()) if cookie else None,
                    )
                )

        return record

    async def _login_page(self, request: web.Request) -> web.Response:
        action = html.escape(f"https://{request.host}/login")
        return web.Response(text=LOGIN_PAGE.format(action=action), content_type="text/html")

    async def _login(self, request: web.Request) -> web.Response:  # raises its redirect
        form = await request.post()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        try:
            self.ledger().authenticate(user, password)
        except BankError as exc:
            raise web.HTTPUnauthorized(text=str(exc)) from None
        cookie = secrets.token_urlsafe(24)
        self._sessions[cookie] = user
        self.evidence.record(events.WebLogin(user=user, session=digest(cookie.encode())))
        redirect = web.HTTPSeeOther(f"https://{request.host}/balance")
        redirect.set_cookie(SESSION_COOKIE, cookie, secure=True, httponly=True, samesite="Lax", path="/")
        raise redirect

    def _user(self, request: web.Request) -> tuple[str, str]:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        user = self._sessions.get(cookie)
        if user is None:
            raise web.HTTPUnauthorized(text="log in first")
        return user, cookie

    async def _balance(self, request: web.Request) -> web.Response:
        user, _ = self._user(request)
        try:
            balance = self.ledger().balance(user)
        except BankError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        page = BALANCE_PAGE.format(user=html.escape(user), balance=balance)
        return web.Response(text=page, content_type="text/html")

    async def _transfer(self, request: web.Request) -> web.Response:
        user, cookie = self._user(request)
        form = await request.post()
        self._requests += 1
        session = digest(cookie.encode())
        try:
            transfer = self.ledger().transfer(
                session=session,
                record_seq=self._requests,
                from_account=user,
                to_account=str(form.get("to", "")),
                amount=int(str(form.get("amount", "0"))),
            )
        except (BankError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.evidence.record(
            events.TransferExecuted(
                session=session,
                seq=self._requests,
                transfer=transfer.id,
                from_account=transfer.from_account,
                to=transfer.to_account,
                amount=transfer.amount,
            )
        )
        return web.json_response({"transfer": transfer.id, "balance": self.ledger().balance(user)})

    async def _crl(self, request: web.Request) -> web.Response:
        return web.Response(body=self.crl.read_bytes(), content_type="application/pkix-crl")

    async def _to_https(self, request: web.Request) -> web.Response:
        port = self.public_https_port or (self.ports.https if self.ports else 443)
        raise web.HTTPPermanentRedirect(
            f"https://{request.url.host or self.server_name}:{port}{request.path_qs}"
        )

    # Listening --------------------------------------------------------------------------------------

    async def start(self, host: str, https_port: int = 0, http_port: int = 0) -> WebPorts:
        """Listen for HTTPS and for the plain-HTTP front door; port 0 picks a free one."""
        https_runner = await self._serve(self._https_app(), host, https_port, self._tls_context())
        https_host, bound_https = _bound(https_runner)
        plain = _bound(await self._serve(self._http_app(), "127.0.0.1", 0, None))

        async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._splices.add(task)
            task.add_done_callback(self._splices.discard)
            await self._split(reader, writer, (https_host, bound_https), plain)

        self._front_door = await asyncio.start_server(split, host, http_port)
        bound_http: int = self._front_door.sockets[0].getsockname()[1]
        self.ports = WebPorts(bound_https, bound_http)
        self.evidence.record(events.WebListening(host=host, https=bound_https, http=bound_http))
        return self.ports

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context

    async def _serve(
        self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None
    ) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        return runner

    async def _split(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        https: tuple[str, int],
        plain: tuple[str, int],
    ) -> None:
        try:
            first = await asyncio.wait_for(reader.read(1), timeout=10)
            if not first:
                return
            target = https if first[0] == TLS_HANDSHAKE_BYTE else plain
            up_reader, up_writer = await asyncio.open_connection(*target)
            up_writer.write(first)
            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, TimeoutError):
            pass  # the client went away or never spoke: nothing to hand on
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._front_door is not None:
            self._front_door.close()
        for task in list(self._splices):
            task.cancel()
        await asyncio.gather(*self._splices, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()


@web.middleware
async def _hsts(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["Strict-Transport-Security"] = HSTS
        raise
    response.headers["Strict-Transport-Security"] = HSTS
    return response


def _bound(runner: web.AppRunner) -> tuple[str, int]:
    """Where a runner's site listens, as one dials it (a wildcard address is dialled on loopback)."""
    host, port = runner.addresses[0][:2]
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else str(host)), int(port)
