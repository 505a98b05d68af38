"""mitmweb's live view, for the lab's owner only.

mitmweb 11.0.2, the newest mitmproxy for Python 3.11, has no login, and whoever reaches it may set any
option: `scripts` runs a file of theirs inside the attacker, `save_stream_file` writes wherever it is
told. `LiveView` is mitmweb's own tornado application with the lab's check in front of every handler:

- every request carries the lab's live-view token: once in the URL (`/?token=TOKEN`, which sets an
  HttpOnly, SameSite=Strict cookie and takes the token out of the address bar), then the cookie, or
  `Authorization: Bearer TOKEN`; without it: 401, before the body is read;
- a change sent by a page of another origin is refused: a browser sends the cookie to every port of
  127.0.0.1, so another local user's page on another port would otherwise send it along;
- only what the view is for is offered: watching the attacker's flows and intercepting them (resume,
  kill, edit, revert). Every other handler, method or command answers 403, every other option 400,
  as mitmweb answers an option it cannot set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any, Final
from urllib.parse import urlsplit

import tornado.httputil
import tornado.web
from mitmproxy.tools.web import app
from mitmproxy.tools.web.master import WebMaster

OFFERED_OPTIONS: Final = frozenset(
    {"intercept", "intercept_active", "showhost", "view_filter", "view_order", "view_order_reversed"}
)
"""What the view may change: what is intercepted, and how flows are shown; never what the attacker runs,
where it listens, what it trusts or what it writes."""

OFFERED_COMMANDS: Final = frozenset(
    {
        "export",
        "export.formats",
        "flow.resume",
        "flow.kill",
        "flow.mark",
        "flow.mark.toggle",
        "commands.history.get",
    }
)
"""Commands that only read, or act on intercepted flows (`export` returns a flow as curl, httpie or raw
text; `export.file`, `save.file`, `script.run`, `set`, `options.save`, replays and the rest are not
offered)."""

_READ: Final = frozenset({"GET"})
_CHANGE: Final = frozenset({"POST"})
OFFERED_HANDLERS: Final[dict[type[tornado.web.RequestHandler], frozenset[str]]] = {
    app.IndexHandler: _READ,
    tornado.web.StaticFileHandler: frozenset({"GET", "HEAD"}),
    app.FilterHelp: _READ,
    app.ClientConnection: _READ,  # the /updates websocket
    app.Commands: _READ,
    app.ExecuteCommand: _CHANGE,  # OFFERED_COMMANDS only
    app.Events: _READ,
    app.Flows: _READ,
    app.DumpFlows: _READ,  # download; loading flows into the attacker is not offered
    app.ResumeFlows: _CHANGE,
    app.KillFlows: _CHANGE,
    app.ResumeFlow: _CHANGE,
    app.KillFlow: _CHANGE,
    app.FlowHandler: frozenset({"PUT", "DELETE"}),
    app.RevertFlow: _CHANGE,
    app.FlowContent: frozenset({"GET", "POST"}),
    app.FlowContentView: _READ,
    app.ClearAll: _CHANGE,
    app.Options: frozenset({"GET", "PUT"}),  # OFFERED_OPTIONS only
    app.State: _READ,
}
"""mitmweb's handlers, and the methods of each that the view offers. Not offered: loading flows
(POST /flows/dump), duplicating and replaying them (new traffic from the attacker), /options/save, and
the local-capture mode's process list and icons."""

_REFUSING_THEMSELVES: Final = (tornado.web.ErrorHandler, app.DnsRebind)
"""Handlers that only refuse (not found; a host name, against DNS rebinding)."""

_TOKEN_CONTEXT: Final = b"mitmlab live view"
NO_TOKEN: Final = (
    "the lab's live view needs its token: open the URL with ?token= that the attacker printed, or send "
    "Authorization: Bearer TOKEN"
)


class LiveViewError(Exception):
    """The live view cannot be served as asked."""


def token(secret: str) -> str:
    """The lab's live-view token: derived from its control secret, so each lab has its own, every copy
    of the state (the lanes', a read-only volume) agrees on it, and nothing more is kept on disk."""
    return hmac.new(secret.encode(), _TOKEN_CONTEXT, hashlib.sha256).hexdigest()


def url(host: str, port: int, view_token: str) -> str:
    """The address that opens the view, token included: for the owner's eyes only."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={view_token}"


def require_loopback(host: str) -> None:
    """Refuse to serve the view beyond this machine's loopback."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LiveViewError(
            f"the live view listens on loopback only (127.0.0.1, ::1 or localhost), not on {host!r}"
        )


def serve(master: WebMaster, view_token: str) -> None:
    """Put the lab's check in front of `master`'s mitmweb (before it starts listening)."""
    master.app = LiveView(master, view_token)


class LiveView(app.Application):
    """mitmweb's application; every request is checked by `get_handler_delegate`, which tornado's router
    calls with the handler it found, before the request's body is read."""

    def __init__(self, master: WebMaster, view_token: str) -> None:
        super().__init__(master, debug=False)
        self.token = view_token.encode()
        self.cookie = "mitmlab_live_" + hashlib.sha256(self.token).hexdigest()[:12]
        """Named after the lab: two labs' views on one host keep their own."""

    def get_handler_delegate(
        self,
        request: tornado.httputil.HTTPServerRequest,
        target_class: type[tornado.web.RequestHandler],
        target_kwargs: dict[str, Any] | None = None,
        path_args: list[bytes] | None = None,
        path_kwargs: dict[str, bytes] | None = None,
    ) -> tornado.web._HandlerDelegate:
        if target_class is app.IndexHandler and self._matches(request.query_arguments.get("token", [])):
            target_class, target_kwargs = _Welcome, {"cookie": self.cookie, "token": self.token.decode()}
        elif (refusal := self._refusal(request, target_class, path_kwargs or {})) is not None:
            target_class, target_kwargs = _Refused, refusal
        elif target_class is app.Options:
            target_class = _OfferedOptions
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)

    def _refusal(
        self,
        request: tornado.httputil.HTTPServerRequest,
        handler: type[tornado.web.RequestHandler],
        path_kwargs: dict[str, bytes],
    ) -> dict[str, Any] | None:
        """Why the request is refused (the status and the words), or None."""
        method = request.method or ""
        if not self._authenticated(request):
            return {"status": 401, "why": NO_TOKEN}
        if method not in ("GET", "HEAD") and not _same_origin(request):
            return {"status": 403, "why": "a change sent by a page of another origin is refused"}
        if handler in _REFUSING_THEMSELVES:
            return None
        if method not in OFFERED_HANDLERS.get(handler, ()):
            return {"status": 403, "why": f"the lab's live view does not offer {method} {request.path}"}
        command = path_kwargs.get("cmd", b"").decode()
        if handler is app.ExecuteCommand and command not in OFFERED_COMMANDS:
            offered = ", ".join(sorted(OFFERED_COMMANDS))
            return {
                "status": 403,
                "why": f"the lab's live view does not offer the command {command}: it offers {offered}",
            }
        return None

    def _authenticated(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        cookie = request.cookies.get(self.cookie)
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        presented = [cookie.value.encode() if cookie else b""]
        if scheme.lower() == "bearer":
            presented.append(bearer.strip().encode())
        return self._matches(presented)

    def _matches(self, presented: list[bytes]) -> bool:
        return any(hmac.compare_digest(candidate, self.token) for candidate in presented if candidate)


def _same_origin(request: tornado.httputil.HTTPServerRequest) -> bool:
    """No Origin (not a browser page: curl, a script) or the view's own."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()


class _Welcome(tornado.web.RequestHandler):
    """`/?token=TOKEN`: the cookie that carries the token from now on, then the view without it."""

    def initialize(self, cookie: str, token: str) -> None:
        self.cookie, self.token = cookie, token

    def get(self) -> None:
        self.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect("/")


@tornado.web.stream_request_body
class _Refused(tornado.web.RequestHandler):
    """A refusal, before mitmweb's XSRF check and without reading the body (mitmweb accepts 4 GB)."""

    def initialize(self, status: int, why: str) -> None:
        self.status, self.why = status, why

    def check_xsrf_cookie(self) -> None:
        """Refused whatever its XSRF token: the answer says why."""

    def prepare(self) -> None:
        self.set_status(self.status)
        if self.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="mitmlab live view"')
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(self.why + "\n")

    def data_received(self, chunk: bytes) -> None:
        """The body of a refused request is dropped as it arrives."""


class _OfferedOptions(app.Options):
    """PUT /options for `OFFERED_OPTIONS` only; the rest answers 400, as mitmweb answers an option it
    cannot set."""

    def put(self) -> None:
        update = self.json
        if not isinstance(update, dict):
            raise app.APIError(400, "an object of options is expected")
        refused = sorted(set(update) - OFFERED_OPTIONS)
        if refused:
            raise app.APIError(
                400,
                f"the lab's live view does not change {', '.join(refused)}: it changes only "
                + ", ".join(sorted(OFFERED_OPTIONS)),
            )
        app.Options.put(self)
