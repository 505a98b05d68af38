"""The attacker role: mitmproxy in this process, in reverse mode in front of the server, hosting the
attack addons from `addons/`, loaded with mitmproxy's own script loader (the same files that run under
`mitmdump -s`). The active attack can be switched between scenarios without a restart.

mitmproxy does not speak SSH: in front of the real sshd the role listens itself (`lab.mitm.ssh`), and
asks the loaded addon, per connection, whether it answers SSH (`ssh_identity`) or lets it pass.

mitmproxy bites (see the field notes): DumpMaster and WebMaster exit the process on a start-up error,
so a bare Master with the default addons is used (and WebMaster loses its ErrorCheck); listeners are
closed explicitly before shutdown, or a restart on the same port fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from mitmproxy import connection, exceptions, hooks, master, options, tcp, tls
from mitmproxy.addons import clientplayback, core, next_layer, proxyserver, tlsconfig
from mitmproxy.net import tls as net_tls

from lab import events
from lab.arp.attacker import ArpPositioning
from lab.arp.poison import PositioningError
from lab.attacks import attack
from lab.capture import ETHERTYPE_ARP, MAX_BYTES, CaptureError, RunCapture
from lab.control import ControlError
from lab.mitm import addon_file, live_view
from lab.mitm.ssh import SshIdentity, SshPart, SshPartError
from lab.net import Address, WebPorts
from lab.ssh.keys import SshKeys
from lab.state import StateDir, take_text


class AttackerError(Exception):
    """The attacker cannot start or cannot load an attack."""


class CannotListen(AttackerError):
    """mitmproxy could not bind the listening address."""


class _Tracker:
    """Counts live flows and reports readiness; always loaded, whatever the attack. TLS passes through
    untouched unless the attack intercepts it: with no attack, or one of the lab channel's only, the
    attacker is a plain relay in front of the HTTPS bank too."""

    def __init__(self, intercepts_tls: Callable[[], bool]) -> None:
        self.live = 0
        self.flows = 0
        self.ready = asyncio.Event()
        self.intercepts_tls = intercepts_tls

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if not self.intercepts_tls():
            data.ignore_connection = True

    def running(self) -> None:
        self.ready.set()

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        if not _counted_by_connection(flow.client_conn):
            self.live += 1
            self.flows += 1

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        if not _counted_by_connection(flow.client_conn):
            self.live -= 1

    def client_connected(self, client: connection.Client) -> None:
        if _counted_by_connection(client):
            self.live += 1
            self.flows += 1

    def client_disconnected(self, client: connection.Client) -> None:
        if _counted_by_connection(client):
            self.live -= 1


def _counted_by_connection(client: connection.Client) -> bool:
    """A connection to the HTTPS bank's listeners, or to the transparent one (which takes the lab
    channel and the bank alike, through ARP), counts from connect to disconnect; one to the lab
    channel's own listener, as its TCP flow."""
    mode = client.proxy_mode
    return mode.type_name == "transparent" or getattr(mode, "scheme", None) in ("https", "http")


def lab_addons() -> list[object]:
    """What the lab's modes need of mitmproxy's own addons, and no more: reverse:tcp, reverse:https and
    reverse:http, TLS, and client replay (a stolen cookie is used with it). Every event is offered to
    every addon, so the thirty defaults cost the attacker about half its latency (docs/benchmarks.md);
    mitmweb (`--web`) brings the whole set, as it needs."""
    return [
        core.Core(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        clientplayback.ClientPlayback(),
    ]


class AttackerRole:
    started_in_this_process: ClassVar[bool] = False
    """Whether mitmproxy's servers ran in this process: its end then skips the interpreter's shutdown
    (`lab.cli.main`)."""

    def __init__(
        self,
        state: StateDir,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        *,
        web_listen: WebPorts | None = None,
        web_upstream: WebPorts | None = None,
        transparent: tuple[str, int] | None = None,
        web: tuple[str, int] | None = None,
        web_exposed: bool = False,
        ssh_listen: tuple[str, int] | None = None,
        ssh_upstream: Address | None = None,
    ) -> None:
        if web is not None and not web_exposed:
            live_view.require_loopback(web[0])
        self.state = state
        self.listen = listen
        self.upstream = upstream
        self.web_listen = web_listen
        """The HTTPS and plain-HTTP ports to listen on (on the listen host), in front of the HTTPS bank's
        `web_upstream` (on the upstream host); neither: the lab channel only."""
        self.web_upstream = web_upstream
        self.transparent = transparent
        """Where mitmproxy also listens in transparent mode: ARP positioning redirects the server's
        ports here, and mitmproxy reads each connection's original destination back."""
        self.web = web
        """Where mitmweb's live view listens (`lab.mitm.live_view`): on loopback unless `web_exposed`."""
        self.ssh_listen = ssh_listen
        self.ssh_upstream = ssh_upstream
        """The SSH port (port 0: any) in front of the real sshd; either None: no SSH part."""
        self._ssh: SshPart | None = None
        self.attack_id: str | None = None
        self.settings: dict[str, Any] = {}
        self._module: ModuleType | None = None
        self._tracker = _Tracker(self._intercepts_tls)
        self._master: master.Master | None = None
        self._run: asyncio.Task[None] | None = None
        self._positioning: ArpPositioning | None = None
        self._capture: RunCapture | None = None
        self._capturing = self._capturing_arp = False
        """Whether a run is being captured (the socket stays open between runs), with its ARP frames."""

    @property
    def keylog(self) -> Path:
        return self.state.root / "attacker" / "keylog.txt"

    def take_keylog(self) -> str:
        """The key log so far, emptied (mitmproxy appends to it)."""
        return take_text(self.keylog)

    @property
    def mitm(self) -> master.Master:
        if self._master is None:
            raise AttackerError("the attacker is not started")
        return self._master

    async def start(self) -> int:
        """Start mitmproxy and return the bound port (port 0 picks one)."""
        confdir = self.state.root / "attacker" / "mitmproxy"
        (self.state.root / "attacker").mkdir(mode=0o700, exist_ok=True)
        confdir.mkdir(mode=0o700, exist_ok=True)
        # Both TLS legs' secrets, NSS format, so that a capture of a run decrypts in Wireshark. mitmproxy
        # reads MITMPROXY_SSLKEYLOGFILE once, at import; its logger is looked up whenever it makes a TLS
        # context, so setting it here, before the first, is the same thing.
        net_tls.log_master_secret = net_tls.make_master_secret_logger(str(self.keylog))
        (up_host, up_port), (host, port) = self.upstream, self.listen
        modes = [f"reverse:tcp://{up_host}:{up_port}@{host}:{port}"]
        if self.web_listen is not None and self.web_upstream is not None:
            modes += [
                f"reverse:https://{up_host}:{self.web_upstream.https}@{host}:{self.web_listen.https}",
                f"reverse:http://{up_host}:{self.web_upstream.http}@{host}:{self.web_listen.http}",
            ]
        if self.transparent is not None:
            modes.append(f"transparent@{self.transparent[0]}:{self.transparent[1]}")
        opts = options.Options(mode=modes, confdir=str(confdir))
        self._master = self._make_master(opts)
        self._master.options.update(
            http3=False,  # the bank speaks HTTP/1.1 and 2 over TCP: no UDP listeners
            keep_host_header=True,  # the bank sees bank.lab, as the client asked, and the client's SNI
            ssl_verify_upstream_trusted_ca=str(self.state.ca_cert),
        )
        self._master.addons.add(self._tracker)
        AttackerRole.started_in_this_process = True
        self._run = asyncio.create_task(self._master.run())
        ready = asyncio.create_task(self._tracker.ready.wait())
        await asyncio.wait([ready, self._run], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        addresses = self._master.addons.get("proxyserver").listen_addrs()
        if not addresses:
            failure = self._run.exception() if self._run.done() and not self._run.cancelled() else None
            await self.stop()
            why = f"{type(failure).__name__}: {failure}" if failure else "in use, or not an address here?"
            raise CannotListen(f"mitmproxy could not listen on {host}:{port} ({why})")
        bound: int = addresses[0][1]
        if self.ssh_listen is not None and self.ssh_upstream is not None:
            ssh = SshPart(
                self.ssh_listen,
                self.ssh_upstream,
                self.state.ssh_keys(),
                self.state.evidence("attacker").record,
                self._ssh_identity,
                lambda: self.attack_id,
            )
            try:
                await ssh.start()
            except SshPartError as exc:
                await self.stop()
                raise CannotListen(str(exc)) from None
            self._ssh = ssh
        return bound

    def ssh_port(self) -> int | None:
        """The bound SSH port, None without an SSH part."""
        return None if self._ssh is None else self._ssh.port

    def _ssh_identity(self, keys: SshKeys) -> SshIdentity | None:
        """What the loaded addon answers SSH with (`ssh_identity`); None: no addon does, pass through.
        What the hook raises, the SSH part records as the addon's error."""
        for addon in self._addons():
            offer = getattr(addon, "ssh_identity", None)
            if callable(offer):
                identity: SshIdentity | None = offer(keys)
                return identity
        return None

    def web_ports(self) -> WebPorts | None:
        """The HTTPS and plain-HTTP ports bound in front of the HTTPS bank."""
        bound: dict[str, int] = {}
        for server in self.mitm.addons.get("proxyserver").servers:
            mode = server.mode
            if getattr(mode, "scheme", None) in ("https", "http") and server.listen_addrs:
                bound[mode.scheme] = server.listen_addrs[0][1]
        return WebPorts(bound["https"], bound["http"]) if len(bound) == 2 else None

    def transparent_port(self) -> int | None:
        for server in self.mitm.addons.get("proxyserver").servers:
            if server.mode.type_name == "transparent" and server.listen_addrs:
                port: int = server.listen_addrs[0][1]
                return port
        return None

    def _make_master(self, opts: options.Options) -> master.Master:
        if self.web is None:
            plain = master.Master(opts)
            plain.addons.add(*lab_addons())
            return plain
        from mitmproxy.tools.web.master import WebMaster

        web = WebMaster(opts, with_termlog=False)
        web.addons.remove(web.addons.get("errorcheck"))
        web.options.update(web_host=self.web[0], web_port=self.web[1], web_open_browser=False)
        live_view.serve(web, self.live_view_token())
        return web

    def live_view_token(self) -> str:
        return live_view.token(self.state.secret())

    def live_view_url(self) -> str | None:
        """The address that opens the live view, with the lab's token: for the owner's console only."""
        return None if self.web is None else live_view.url(*self.web, self.live_view_token())

    def switch(self, attack_id: str | None, settings: dict[str, Any] | None = None) -> None:
        """Make `attack_id` the active attack (None: pass traffic through), with addon options `settings`."""
        self._unload()
        if attack_id is not None:
            self._load(attack(attack_id).addon, settings or {})
            self.attack_id, self.settings = attack_id, dict(settings or {})

    def switch_to_file(self, path: Path, settings: dict[str, Any] | None = None) -> None:
        """Run an addon file of one's own (docs/write-your-own-attack.md)."""
        self._unload()
        self._load(path, settings or {})
        self.attack_id, self.settings = str(path), dict(settings or {})

    def _unload(self) -> None:
        if self._module is not None:
            self.mitm.addons.remove(self._module)
            self._module = None
        self.attack_id, self.settings = None, {}

    def _load(self, path: Path, settings: dict[str, Any]) -> None:
        """Load an addon file as `mitmdump -s` does and configure it, or say why not in one line: what
        the file's own code raised, with its type (`lab.mitm.addon_file`)."""
        mitm = self.mitm
        if not path.is_file():
            raise AttackerError(f"no addon file at {path}")
        try:
            module = addon_file.load(path)
            with addon_file.its_hooks(path):
                mitm.addons.add(module)
        except addon_file.AddonFileError as exc:
            raise AttackerError(str(exc)) from None
        # mitmproxy's options outlive the addon that declared them: start every lab_ option afresh.
        declared = mitm.options.keys()
        defaults = {key: mitm.options.default(key) for key in declared if key.startswith("lab_")}
        if "lab_state_dir" in declared:  # a plain mitmproxy addon declares none of the lab's options
            defaults["lab_state_dir"] = str(self.state.root)
        try:
            mitm.options.update(**{**defaults, **settings})
            with addon_file.its_hooks(path):
                mitm.addons.invoke_addon_sync(module, hooks.ConfigureHook(set(mitm.options.keys())))
                mitm.addons.invoke_addon_sync(module, hooks.RunningHook())
        except KeyError as exc:
            self._discard(module)
            raise AttackerError(f"{path.name} has no option {exc}") from None
        except (exceptions.OptionsError, TypeError) as exc:  # TypeError: a value of an option's wrong type
            self._discard(module)
            raise AttackerError(f"{path.name}: {exc}") from None
        except addon_file.AddonFileError as exc:
            self._discard(module)
            raise AttackerError(str(exc)) from None
        self._module = module

    def _discard(self, module: ModuleType) -> None:
        """Take out an addon that did not start; its `done` hook is not asked to succeed."""
        with contextlib.suppress(Exception):
            self.mitm.addons.remove(module)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no flow is live, no SSH connection is in flight and the attack's background work (a
        pending replay) is done."""
        async with asyncio.timeout(timeout):
            while self._tracker.live or self._pending() or (self._ssh is not None and self._ssh.busy):
                await asyncio.sleep(0.005)  # flows end a moment after the client closes

    def _addons(self) -> list[object]:
        """The loaded addon file's addons, none without one."""
        return list(getattr(self._module, "addons", [])) if self._module else []

    def _intercepts_tls(self) -> bool:
        return any(getattr(addon, "intercepts_tls", False) for addon in self._addons())

    def _pending(self) -> bool:
        return any(not task.done() for addon in self._addons() for task in getattr(addon, "pending", ()))

    def status(self) -> dict[str, Any]:
        ssh = {} if self._ssh is None else {"ssh_connections": self._ssh.connections}
        return {
            "attack": self.attack_id,
            "settings": self.settings,
            "live_flows": self._tracker.live,
            "flows": self._tracker.flows,
            **ssh,
        }

    async def unposition(self) -> None:
        """Off the path: the poisoning stopped, both caches told the truth, the redirects gone."""
        positioning, self._positioning = self._positioning, None
        if positioning is not None:
            await positioning.stop()

    def begin_capture(
        self, interface: str, ports: list[int], *, arp: bool, max_bytes: int = MAX_BYTES
    ) -> str | None:
        """Capture a run's connections (to or from `ports`), and its ARP frames if it runs through ARP,
        from now until `take_capture`; why not, when this process cannot. The packet socket stays open
        from run to run (opening and closing one waits for the kernel's RCU, about 15 ms each)."""
        tcp = " or ".join(f"port {port}" for port in sorted(set(ports)))
        bpf = f"(tcp and ({tcp})) or arp"
        capture = self._capture
        if (
            capture is not None
            and capture.failed is None
            and (capture.interface, capture.bpf, capture.max_bytes) == (interface, bpf, max_bytes)
        ):
            capture.begin()
        else:
            self.end_capture()
            capture = RunCapture(interface, bpf, max_bytes=max_bytes)
            try:
                capture.start()
            except CaptureError as exc:
                return str(exc)
            self._capture = capture
        self._capturing, self._capturing_arp = True, arp
        return None

    def take_capture(self) -> dict[str, Any]:
        """The run's frames, each [seconds, base64], how many past the cap were dropped, and why the
        capture stopped if it did."""
        capture, capturing, self._capturing = self._capture, self._capturing, False
        if capture is None or not capturing:
            return {"frames": [], "dropped": 0}
        captured = capture.take()
        # ARP only in a run through ARP: the lab network's own, during another lane's run, is not this one's
        kept = [f for f in captured.frames if self._capturing_arp or f.ethertype != ETHERTYPE_ARP]
        return {
            "frames": [[frame.time, base64.b64encode(frame.data).decode()] for frame in kept],
            "dropped": captured.dropped,
            "lost": captured.lost,
            "failed": capture.failed,
        }

    def end_capture(self) -> None:
        capture, self._capture, self._capturing = self._capture, None, False
        if capture is not None:
            capture.stop()

    async def stop(self) -> None:
        self.end_capture()
        with contextlib.suppress(PositioningError):
            await self.unposition()
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            await ssh.stop()
        if self._master is None:
            return
        with contextlib.suppress(TimeoutError):  # let the last flows close rather than cut them off
            await self.idle(timeout=2)
        with contextlib.suppress(Exception):
            await self._master.addons.get("proxyserver").servers.update([])
        self._master.shutdown()
        if self._run is not None:
            with contextlib.suppress(Exception):
                await self._run
        self._master = None

    # The control port --------------------------------------------------------------------------------

    def control_handlers(self) -> dict[str, Any]:
        async def switch_attack(request: dict[str, Any]) -> dict[str, Any]:
            attack_id = request.get("id")
            settings = request.get("options") or {}
            if (attack_id is not None and not isinstance(attack_id, str)) or not isinstance(settings, dict):
                raise ControlError('"id" is an attack id or null, "options" an object')
            try:
                self.switch(attack_id, settings)
            except (AttackerError, ValueError) as exc:
                raise ControlError(str(exc)) from None
            return self.status()

        async def wait_idle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                await self.idle(float(request.get("timeout", 30)))
            except TimeoutError:
                raise ControlError("still busy after the timeout") from None
            return self.status()

        async def status(request: dict[str, Any]) -> dict[str, Any]:
            return self.status()

        async def position(request: dict[str, Any]) -> dict[str, Any]:
            """ARP positioning (docs/arp.md) between `client` and `server` (addresses on `interface`);
            `redirects`: [the server's port, mitmproxy's transparent port] pairs."""
            client, server = request.get("client"), request.get("server")
            interface = request.get("interface", "eth0")
            redirects = request.get("redirects", [])
            if not all(isinstance(v, str) for v in (client, server, interface)) or not isinstance(
                redirects, list
            ):
                raise ControlError('"client", "server", "interface" are strings, "redirects" a list of pairs')
            try:
                pairs = [(int(port), int(to)) for port, to in redirects]
            except (TypeError, ValueError):
                raise ControlError('"redirects" holds [port, transparent port] pairs') from None
            await self.unposition()
            positioning = ArpPositioning(
                self.state.evidence("attacker").record,
                str(interface),
                str(client),
                str(server),
                pairs,
                interval=float(request.get("interval", 0.5)),
            )
            try:
                await positioning.start()
            except PositioningError as exc:
                self.state.evidence("attacker").record(
                    events.PositioningFailed(positioning="arp", error=str(exc))
                )
                return {"positioned": False, "error": str(exc)}
            self._positioning = positioning
            return {"positioned": True}

        async def unposition(request: dict[str, Any]) -> dict[str, Any]:
            await self.unposition()
            return {}

        async def reset(request: dict[str, Any]) -> dict[str, Any]:
            self._capturing = False
            await self.unposition()
            self.switch(None)
            if self._ssh is not None:  # before the evidence goes: a leftover connection writes no more
                await self._ssh.reset()
            self.state.reset_role("attacker")
            return self.status()

        async def keylog(request: dict[str, Any]) -> dict[str, Any]:
            return {"keylog": self.take_keylog()}

        async def capture(request: dict[str, Any]) -> dict[str, Any]:
            """Capture from now on (docs/wireshark.md): on `interface`, the TCP connections to or from
            `ports`, and ARP if `arp`; at most `max_bytes` of frames."""
            interface, ports = request.get("interface", "lo"), request.get("ports")
            max_bytes = request.get("max_bytes", MAX_BYTES)
            if type(max_bytes) is not int or not 0 < max_bytes <= MAX_BYTES:
                raise ControlError(f'"max_bytes" is a size of at most {MAX_BYTES} bytes')
            if (
                not isinstance(interface, str)
                or not isinstance(ports, list)
                or not ports
                or not all(type(port) is int and 0 < port < 65536 for port in ports)
            ):
                raise ControlError('"interface" is a string, "ports" a list of TCP ports')
            arp = bool(request.get("arp", False))
            # off the event loop: the first filter imports scapy, and mitmproxy goes on relaying
            why = await asyncio.to_thread(self.begin_capture, interface, ports, arp=arp, max_bytes=max_bytes)
            return {"capturing": why is None, **({"why": why} if why else {})}

        async def capture_take(request: dict[str, Any]) -> dict[str, Any]:
            return await asyncio.to_thread(self.take_capture)  # it may wait for a lab network to settle

        return {
            "attack": switch_attack,
            "idle": wait_idle,
            "status": status,
            "reset": reset,
            "keylog": keylog,
            "position": position,
            "unposition": unposition,
            "capture": capture,
            "capture_take": capture_take,
        }
