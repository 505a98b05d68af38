"""The real-TLS attacks on their own: each addon under `mitmdump -s`, in front of the real HTTPS bank
(`mitmlab role server`), presenting exactly the certificate it names, and sslstrip keeping a real
curl on plain HTTP. Then what a client sees through the attacker role with no attack: the bank."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from mitmproxy.addons.script import load_script
from mitmproxy.test import taddons, tflow

from lab import events
from lab.attacks import attack
from lab.clients.adapters import CLIENTS
from lab.clients.browser import Browsers
from lab.clients.job import Target
from lab.clients.run import visit
from lab.clients.visit import make_visit, trust_files
from lab.net import WebPorts
from lab.pki.authority import new_rsa_key
from lab.stacks.real_tls import decide_visit
from lab.state import StateDir
from lab.verdict import GroundTruth, RunEvidence
from tests.processes import free_port, mitmdump
from tests.world import evidence_dicts, read_evidence

pytestmark = pytest.mark.loopback


def tls_options(state: StateDir) -> tuple[str, ...]:
    """What the attacker role sets, and the addons' docstrings give: the bank sees bank.lab, as the
    client asked; the bank's certificate is checked against the lab CA."""
    return ("keep_host_header=true", "http3=false", f"ssl_verify_upstream_trusted_ca={state.ca_cert}")


@pytest.fixture(scope="module")
def bank(state_template: StateDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebPorts]:
    """The server role, as `mitmlab check` starts it: its ready file says where the HTTPS bank is. One
    for the module: every test's state is a copy of the same template, so the bank's certificate
    chains to the CA that each test's mitmdump checks it against."""
    here = tmp_path_factory.mktemp("bank")
    state = StateDir(here / "state")
    shutil.copytree(state_template.root, state.root)
    ready = here / "server.ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "role",
            "server",
            "--state-dir",
            str(state.root),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "the server role did not start"
            time.sleep(0.02)
        ports = json.loads(ready.read_text())
        yield WebPorts(ports["https"], ports["http"])
    finally:
        process.terminate()
        process.wait(timeout=10)


def presented(port: int) -> x509.Certificate:
    """The certificate that whoever listens on `port` answers a TLS client asking for bank.lab with."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # to look at it, not to trust it
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="bank.lab") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.mark.parametrize(
    ("attack_id", "certificate"),
    [
        ("self-signed", "self-signed"),
        ("wrong-host", "attacker.lab"),
        ("expired-cert", "expired"),
        ("rogue-ca", "rogue-bank.lab"),
        ("revoked", "revoked"),
        ("untrusted-root", None),
    ],
)
def test_each_tls_addon_presents_exactly_its_certificate_under_mitmdump(
    state: StateDir, tmp_path: Path, bank: WebPorts, attack_id: str, certificate: str | None
) -> None:
    upstream = f"reverse:https://127.0.0.1:{bank.https}"
    addon, confdir = attack(attack_id).addon, tmp_path / "mitmproxy"
    with mitmdump(addon, state, confdir, upstream, options=tls_options(state)) as [port]:
        shown = presented(port)
    if certificate is not None:
        held = state.attacker_leaf(certificate).certificate
        assert shown.fingerprint(hashes.SHA256()) == held.fingerprint(hashes.SHA256())
    else:  # made on the fly for bank.lab by mitmproxy's own CA, in the confdir it created
        assert "mitmproxy" in shown.issuer.rfc4514_string()
        names = shown.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "bank.lab" in names.get_values_for_type(x509.DNSName)
    events = [e for e in evidence_dicts(state, "attacker") if e["attack"] == attack_id]
    assert events and events[0]["event"] == "presenting"


@pytest.mark.system  # a real client: curl
def test_sslstrip_keeps_curl_on_plain_http_under_mitmdump(
    state: StateDir, tmp_path: Path, bank: WebPorts
) -> None:
    upstreams = (f"reverse:https://127.0.0.1:{bank.https}", f"reverse:http://127.0.0.1:{bank.http}")
    addon = attack("sslstrip").addon
    with mitmdump(addon, state, tmp_path / "mitmproxy", *upstreams, options=tls_options(state)) as [
        _,
        http_port,
    ]:
        url = f"http://bank.lab:{http_port}/"
        page = subprocess.run(
            ["curl", "-sS", "-i", "--max-time", "10", "--resolve", f"bank.lab:{http_port}:127.0.0.1", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert page.returncode == 0, page.stderr
    head, _, body = page.stdout.partition("\n\n")  # text mode: the \r\n are \n
    assert head.startswith("HTTP/1.1 200")  # not the front door's 308 to https://
    assert "strict-transport-security" not in head.lower()
    assert f'action="http://bank.lab:{http_port}/login"' in body, page.stdout  # the form posts in the clear
    changed = [e for e in evidence_dicts(state, "attacker") if e["event"] == "changed"]
    assert changed and changed[0]["before"]["hsts"] is True


def test_sslstrip_rewrites_a_response_as_mitmproxy_tests_its_addons(state: StateDir) -> None:
    with taddons.context() as tctx:
        module = load_script(str(attack("sslstrip").addon))
        assert module is not None
        tctx.master.addons.add(module)
        [strip] = module.addons
        tctx.configure(strip, lab_state_dir=str(state.root))
        flow = tflow.tflow(resp=True)
        flow.client_conn.timestamp_tls_setup = None  # the client speaks plain HTTP
        response = flow.response
        assert response is not None
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
        response.headers["Content-Type"] = "text/html"
        response.headers["Location"] = "https://bank.lab:9443/balance"
        response.headers.set_all("Set-Cookie", ["session=abc; HttpOnly; Path=/; Secure"])
        response.text = '<form action="https://bank.lab:9443/login">'
        strip.response(flow)
        assert "strict-transport-security" not in response.headers
        assert response.headers["Location"] == "http://bank.lab:9443/balance"
        assert response.headers.get_all("Set-Cookie") == ["session=abc; HttpOnly; Path=/"]
        assert response.text == '<form action="http://bank.lab:9443/login">'
    read = [e for e in evidence_dicts(state, "attacker") if e["event"] == "read"]
    assert [(e["secret"], e["value"], e["how"]) for e in read] == [("cookie", "abc", "in_the_clear")]


@pytest.mark.system  # a real client: curl
def test_a_proxy_error_is_a_failure_in_the_clients_words_never_a_protection(
    state: StateDir, tmp_path: Path
) -> None:
    dead = f"reverse:https://127.0.0.1:{free_port()}"  # the bank is gone: mitmproxy cannot reach it
    addon, confdir = attack("rogue-ca").addon, tmp_path / "mitmproxy"
    with mitmdump(addon, state, confdir, dead, options=tls_options(state)) as [port]:
        password = state.client_password()
        target = Target("127.0.0.1", port, port, "alice", password, trust_files(state), tmp_path / "visit")
        done = asyncio.run(visit(CLIENTS["curl-careless"], target, Browsers()))
    assert not done.reading.completed and done.reading.protection is None
    assert done.reading.words and len(done.ran) == 1


def write_malformed_leaf(state: StateDir, name: str) -> None:
    """A bank.lab certificate the lab CA really signed, in date, whose subjectAltName is garbage: the
    DER around it parses, the names inside do not."""
    ca = x509.load_pem_x509_certificate(state.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(state.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = new_rsa_key()  # the attacker's keys are RSA, as lab.state loads them
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.lab")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x05\x82\x09bank"),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = certificate.public_bytes(serialization.Encoding.PEM) + state.ca_cert.read_bytes()
    state.attacker_cert(name).write_bytes(chain)
    state.attacker_key(name).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@pytest.mark.system  # the real clients: Python's urllib, curl, openssl
def test_a_certificate_the_clients_cannot_parse_is_an_error_with_their_words_never_a_protection(
    state: StateDir, tmp_path: Path, bank: WebPorts
) -> None:
    """OpenSSL words it as a chain error ('unable to get local issuer certificate', Python's): the
    attacker's evidence says the certificate is malformed, and the verdict is an error, not ca_trust."""
    write_malformed_leaf(state, "malformed")
    addon = tmp_path / "malformed.py"
    addon.write_text(
        "from lab.mitm.web import InterceptTls\n"
        'addons = [InterceptTls("wrong-host", certificate="malformed")]\n'
    )
    upstream = f"reverse:https://127.0.0.1:{bank.https}"
    judged = {}
    with mitmdump(addon, state, tmp_path / "mitmproxy", upstream, options=tls_options(state)) as [port]:
        for client in ("python-urllib", "curl", "openssl"):
            state.evidence_path("client").unlink(missing_ok=True)
            done = asyncio.run(make_visit(state, CLIENTS[client], "127.0.0.1", port, port, Browsers()))
            assert not done.visited.completed and done.visited.words, client
            run = RunEvidence(
                {role: read_evidence(state.evidence_path(role), role) for role in ("client", "attacker")}
            )
            judged[client] = (done.visited.words, decide_visit(run, GroundTruth(state.client_password(), "")))
    presented = [
        e
        for e in read_evidence(state.evidence_path("attacker"), "attacker")
        if isinstance(e, events.Presenting)
    ]
    assert presented and all(e.malformed and "subject_alternative_name" in e.malformed for e in presented)
    assert "unable to get local issuer certificate" in judged["python-urllib"][0]  # OpenSSL's chain words
    for client, (words, verdict) in judged.items():
        assert verdict.verdict == "error" and verdict.blocked_by is None, (client, verdict)
        assert (
            verdict.error is not None and "malformed certificate" in verdict.error and words in verdict.error
        )
