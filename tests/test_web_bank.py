"""The HTTPS bank on real sockets: TLS with the lab PKI's bank.lab certificate, a `Secure; HttpOnly`
session cookie, HSTS, the plain-HTTP front door's redirect (and its TLS), the CRL, the shared ledger,
and bad input that leaves it serving."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from cryptography import x509

from lab.bank.web import HSTS, SESSION_COOKIE
from lab.channel.protections import RECOMMENDED
from lab.net import WebPorts
from lab.roles.server import BankServer
from lab.state import StateDir
from tests.world import read_evidence

pytestmark = pytest.mark.loopback


class Client:
    """http.client against bank.lab at 127.0.0.1."""

    def __init__(self, state: StateDir, ports: WebPorts) -> None:
        self.context = ssl.create_default_context(cafile=state.ca_cert)
        self.ports = ports

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None = None,
        cookie: str | None = None,
        tls: bool = True,
    ) -> tuple[int, dict[str, str], str, list[str]]:
        connection: http.client.HTTPConnection
        if tls:
            raw = socket.create_connection(("127.0.0.1", self.ports.https))
            connection = http.client.HTTPSConnection("bank.lab", self.ports.https, context=self.context)
            connection.sock = self.context.wrap_socket(raw, server_hostname="bank.lab")
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.ports.http)
        headers = {"Host": f"bank.lab:{self.ports.https if tls else self.ports.http}"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
        encoded = urllib.parse.urlencode(body).encode() if body is not None else None
        connection.request(method, path, body=encoded, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
        cookies = response.headers.get_all("Set-Cookie") or []
        connection.close()
        return response.status, dict(response.headers), text, cookies


Bank = tuple[BankServer, "Client", asyncio.AbstractEventLoop]


@pytest.fixture
def bank(state: StateDir) -> Iterator[tuple[BankServer, Client, asyncio.AbstractEventLoop]]:
    """The server role's bank in an event loop of its own thread, as in the role's process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def within(coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)  # type: ignore[arg-type]

    server = BankServer(state, RECOMMENDED)
    within(server.start("127.0.0.1", 0))
    ports = within(server.start_web("127.0.0.1"))
    assert isinstance(ports, WebPorts)
    yield server, Client(state, ports), loop
    within(server.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_log_in_get_a_secure_httponly_cookie_and_hsts(bank: Bank, state: StateDir) -> None:
    server, client, _ = bank
    status, headers, page, _ = client.call("GET", "/")
    assert status == 200 and f'action="https://bank.lab:{client.ports.https}/login"' in page
    assert headers["Strict-Transport-Security"] == HSTS
    credentials = {"user": "alice", "password": state.client_password()}
    status, headers, _, cookies = client.call("POST", "/login", credentials)
    assert status == 303 and headers["Location"] == f"https://bank.lab:{client.ports.https}/balance"
    [cookie] = cookies
    assert "Secure" in cookie and "HttpOnly" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    status, _, page, _ = client.call("GET", "/balance", cookie=value)
    assert status == 200 and 'id="balance">alice: 1000<' in page
    status, _, _, _ = client.call("POST", "/transfer", {"to": "bob", "amount": "100"}, value)
    assert status == 200
    assert server.ledger.balance("alice") == 900  # the lab channel's ledger, shared
    recorded = read_evidence(state.evidence_path("server"), "server")
    assert [e.name for e in recorded if e.name in ("web_login", "transfer_executed")] == [
        "web_login",
        "transfer_executed",
    ]


def test_a_wrong_password_and_no_cookie_are_refused(bank: Bank) -> None:
    _, client, _ = bank
    status, _, _, cookies = client.call("POST", "/login", {"user": "alice", "password": "guess"})
    assert status == 401 and cookies == []
    assert (client.call("GET", "/balance"))[0] == 401
    assert (client.call("GET", "/balance", cookie="forged"))[0] == 401


def test_the_front_door_redirects_to_https_and_serves_the_crl(bank: Bank, state: StateDir) -> None:
    server, client, _ = bank
    status, headers, _, _ = client.call("POST", "/login?x=1", {"password": "p"}, tls=False)
    assert status == 308 and headers["Location"] == f"https://bank.lab:{client.ports.https}/login?x=1"
    server.web.public_https_port = 4443  # bank.lab as the client reaches it (the attacker's port)
    status, headers, _, _ = client.call("GET", "/", tls=False)
    assert headers["Location"] == "https://bank.lab:4443/"
    assert "Strict-Transport-Security" not in headers  # HSTS means nothing over plain HTTP
    status, _, _, _ = client.call("GET", "/ca.crl", tls=False)
    assert status == 200
    crl = x509.load_pem_x509_crl(state.ca_crl.read_bytes())
    revoked = state.attacker_leaf("revoked").certificate
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.is_signature_valid(x509.load_pem_x509_certificate(state.ca_cert.read_bytes()).public_key())  # type: ignore[arg-type]


def test_tls_on_the_front_door_reaches_the_bank(bank: Bank) -> None:
    """What a client upgraded by HSTS does: https:// on the port it had for http://."""
    _, client, _ = bank
    upgraded = Client.__new__(Client)
    upgraded.context, upgraded.ports = client.context, WebPorts(client.ports.http, client.ports.http)
    status, _, page, _ = upgraded.call("GET", "/")
    assert status == 200 and "<form" in page


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x00\x05hello", b"\xff" * 300, b"GET /\r\n\r\n", b""])
def test_garbage_on_either_port_leaves_the_bank_serving(bank: Bank, garbage: bytes) -> None:
    _, client, _ = bank
    for port in (client.ports.https, client.ports.http):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(garbage)
    assert (client.call("GET", "/"))[0] == 200
    assert (client.call("GET", "/", tls=False))[0] == 308
