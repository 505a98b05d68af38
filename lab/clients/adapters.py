"""The real clients, each a program the lab runs as a victim, in the configurations the `clients` view
puts side by side (their own switches, a careless user's trust store, an HSTS cache).

Every adapter visits bank.lab the way its users do: a script or curl opens the page, finds the login
form and posts the password to where the form says; `openssl s_client` sends the login itself; a
browser is given the address (and, after `#`, what the user types, which the bank's page fills in:
it never goes on the wire before the form is submitted). What each prints is read with its own
`Words`: data, not verdicts.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from lab.clients.browse import form_action
from lab.clients.job import (
    BALANCE_MARK,
    OPENSSL_VERIFY,
    Invocation,
    Job,
    Ran,
    Reading,
    Target,
    Words,
    last_words,
    read_words,
)

CLIENT_TIMEOUT: Final = 10
"""Seconds a client is given for one request (its own switch, where it has one)."""


class Adapter(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def programs(self) -> tuple[str, ...]:
        """What must be installed for it to run."""
        ...

    def job(self, target: Target) -> Job: ...


def _credentials(target: Target) -> bytes:
    return urllib.parse.urlencode({"user": target.user, "password": target.password}).encode()


def _careless_bundle(target: Target) -> dict[str, bytes]:
    """A CA file that also holds the rogue CA, as a careless user's trust store does."""
    return {"careless-ca.pem": target.trust.ca.read_bytes() + target.trust.rogue_ca.read_bytes()}


# curl -----------------------------------------------------------------------------------------------

CURL_WORDS: Final = (
    Words(r"public key does not match pinned public key", "pinning"),
    *OPENSSL_VERIFY,
    Words(r"Switched from HTTP to HTTPS due to HSTS", "hsts", when="completed"),
)


@dataclass(frozen=True)
class Curl:
    id: str
    summary: str
    insecure: bool = False
    pin: bool = False
    crl: bool = False
    careless: bool = False
    hsts: Literal["empty", "known"] | None = None
    """With an HSTS cache (`--hsts`), the customer types http://bank.lab, as a browser's user does."""
    programs: tuple[str, ...] = ("curl",)

    def job(self, target: Target) -> Job:
        files = {"credentials": _credentials(target)}
        cafile = "careless-ca.pem" if self.careless else str(target.trust.ca)
        if self.careless:
            files.update(_careless_bundle(target))
        argv = ["curl", "-sS", "-L", "--max-time", str(CLIENT_TIMEOUT), "--cacert", cafile]
        argv += ["-c", "cookies.txt", "-b", "cookies.txt"]
        for resolve in target.resolves():
            argv += ["--resolve", resolve]
        if self.insecure:
            argv.append("-k")
        if self.pin:
            argv += ["--pinnedpubkey", target.trust.pin]
        if self.crl:
            argv += ["--crlfile", str(target.trust.crl)]
        if self.hsts is not None:
            argv += ["--hsts", "hsts.txt", "-v"]  # -v: curl says when HSTS switched it to https
            files["hsts.txt"] = _curl_hsts_cache(target.name) if self.hsts == "known" else b""
        entry = target.url("http" if self.hsts else "https")
        page = yield Invocation((*argv, entry), files=files)
        if page.exit_code != 0:
            return read_words([page], False, CURL_WORDS, _curl_failure(page))
        try:
            action = form_action(page.stdout, entry)
        except LookupError:
            opening = " ".join(page.stdout.split())[:120]
            return Reading(False, f"curl got a page with no login form: {opening or 'an empty page'}")
        landed = yield Invocation((*argv, "--data", "@credentials", action))
        done = landed.exit_code == 0 and BALANCE_MARK in landed.stdout
        return read_words([page, landed], done, CURL_WORDS, "logged in" if done else _curl_failure(landed))


def _curl_failure(ran: Ran) -> str:
    """curl's own error line (`curl: (N) ...`), which its advice follows on stderr."""
    for line in ran.stderr.splitlines():
        if line.startswith("curl: ("):
            return line.strip()
    return last_words(ran)


def _curl_hsts_cache(name: str) -> bytes:
    """curl's HSTS cache knowing `name` for a year (the format of curl's docs/HSTS.md)."""
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    return f'{name} "{expiry:%Y%m%d %H:%M:%S}"\n'.encode()


# Python ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonScript:
    id: str
    summary: str
    library: Literal["urllib", "requests"]
    crl: bool = False
    careless: bool = False
    programs: tuple[str, ...] = ()
    """The lab's own Python: always there."""

    def job(self, target: Target) -> Job:
        files = _careless_bundle(target) if self.careless else {}
        argv = [sys.executable, "-m", "lab.clients.browse", self.library, target.url("https")]
        cafile = "careless-ca.pem" if self.careless else str(target.trust.ca)
        argv += ["--resolve", f"{target.name}:{target.address}", "--cafile", cafile, "--user", target.user]
        if self.crl:
            argv += ["--crlfile", str(target.trust.crl)]
        ran = yield Invocation(tuple(argv), env={"MITMLAB_PASSWORD": target.password}, files=files)
        done = ran.exit_code == 0 and BALANCE_MARK in ran.stdout
        return read_words([ran], done, OPENSSL_VERIFY, "logged in" if done else last_words(ran))


# openssl s_client -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpensslClient:
    id: str
    summary: str
    crl: bool = False
    programs: tuple[str, ...] = ("openssl",)

    def job(self, target: Target) -> Job:
        body = _credentials(target)
        request = (
            f"POST /login HTTP/1.1\r\nHost: {target.name}:{target.https}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        argv = ["openssl", "s_client", "-quiet", "-connect", f"{target.address}:{target.https}"]
        argv += ["-servername", target.name, "-verify_hostname", target.name, "-verify_return_error"]
        argv += ["-CAfile", str(target.trust.ca)]
        if self.crl:
            argv += ["-crl_check", "-CRL", str(target.trust.crl)]
        ran = yield Invocation(tuple(argv), stdin=request)
        done = " 303 " in ran.stdout.split("\n", 1)[0] and "session=" in ran.stdout
        return read_words([ran], done, OPENSSL_VERIFY, "logged in" if done else last_words(ran))


# Chromium -------------------------------------------------------------------------------------------

CHROMIUM_WORDS: Final = (
    # `net::` as Chromium says it (its stderr, its warning page): the net log's table of constants
    # names every error, these among them, bare.
    Words(r"net::ERR_CERT_AUTHORITY_INVALID", "ca_trust"),
    Words(r"net::ERR_CERT_COMMON_NAME_INVALID", "hostname"),
    Words(r"net::ERR_CERT_DATE_INVALID", "validity"),
    Words(r"net::ERR_CERT_REVOKED", "revocation"),
    Words(
        r'"Location: https://bank\.lab[:/][^"]*"(,"[^"]*")*?,"Non-Authoritative-Reason: HSTS"',
        "hsts",
        when="completed",
        say="net log: HTTP/1.1 307 Internal Redirect to https://, Non-Authoritative-Reason: HSTS",
    ),
)
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",  # the lab runs it as whoever runs the lab, root in containers
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-dev-shm-usage",  # a container's /dev/shm is 64 MiB
)
"""Headless, and nothing of Chromium's own fetches: with `MAP * ~NOTFOUND` below it dials no one but
bank.lab (docs/tls.md)."""
HSTS_READY_HOST: Final = "hsts-ready.lab"
"""A name the HSTS profile's TransportSecurity file holds beside bank.lab, never dialled (`MAP * ~NOTFOUND`).
Chromium reads that file in the background after it starts: a navigation made first goes out as plain
HTTP, as if the profile knew nothing. The start page asks this name until Chromium answers with its
internal HSTS redirect, the sign that the file is loaded, and only then goes to bank.lab, as a user
types the address into a browser that is up."""
HSTS_START_PAGE: Final = """<!DOCTYPE html><title>start</title><script>
(async () => {
  for (let tries = 0; tries < 500; tries++) {
    try {
      const answer = await fetch("http://%(ready)s/", {redirect: "manual"});
      if (answer.type === "opaqueredirect") break;
    } catch (notYet) {}
    await new Promise((wake) => setTimeout(wake, 10));
  }
  location.replace(%(target)s);
})();
</script>"""


@dataclass(frozen=True)
class Chromium:
    id: str
    summary: str
    hsts_known: bool = False
    careless: bool = False
    programs: tuple[str, ...] = ("chromium", "certutil")

    def job(self, target: Target) -> Job:
        nssdb = "sql:home/.pki/nssdb"
        made = yield Invocation(
            ("certutil", "-N", "-d", nssdb, "--empty-password"), files={"home/.pki/nssdb/.keep": b""}
        )
        if made.exit_code != 0:
            return Reading(False, f"the lab could not make Chromium's NSS store: {last_words(made)}")
        cas = [("labca", target.trust.ca)] + ([("rogueca", target.trust.rogue_ca)] if self.careless else [])
        for nickname, path in cas:
            added = yield Invocation(
                ("certutil", "-A", "-d", nssdb, "-t", "C,,", "-n", nickname, "-i", str(path))
            )
            if added.exit_code != 0:
                why = f"the lab could not add a CA to Chromium's NSS store: {last_words(added)}"
                return Reading(False, why)
        files = {}
        typed = urllib.parse.urlencode({"user": target.user, "password": target.password})
        visit = f"{target.url('http')}#{typed}"  # the user types bank.lab; the page fills in the rest
        if self.hsts_known:
            files["profile/Default/TransportSecurity"] = _chromium_hsts(target.name, HSTS_READY_HOST)
            files["start.html"] = _start_page(visit)
            visit = (target.workdir / "start.html").absolute().as_uri()
        argv = [
            "chromium",
            *CHROMIUM_FLAGS,
            "--user-data-dir=profile",
            f"--host-resolver-rules=MAP {target.name} {target.address}, MAP * ~NOTFOUND",
            f"--timeout={CLIENT_TIMEOUT * 1000}",
            "--log-net-log=netlog.json",
            "--dump-dom",
            *(["--virtual-time-budget=10000"] if self.hsts_known else []),  # dump after the start page
            visit,
        ]
        invocation = Invocation(tuple(argv), env={"HOME": "home"}, files=files, collect=("netlog.json",))
        ran = yield invocation
        if self.hsts_known and not ran.stdout.strip() and not _load_failed(ran):
            # After the start page's second navigation, a loaded machine at times gets no page at
            # all: nothing read, nothing said. Once more, the first run kept in the evidence.
            ran = yield invocation
        done = BALANCE_MARK in ran.stdout
        why = "logged in" if done else _chromium_failure(ran)
        return read_words([ran], done, CHROMIUM_WORDS, why)


def _chromium_hsts(*names: str) -> bytes:
    """A TransportSecurity file that knows `names` as HSTS hosts for a year."""
    expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)).timestamp()
    entries = [
        {"expiry": expiry, "host": _hsts_key(name), "mode": "force-https", "sts_include_subdomains": False}
        for name in names
    ]
    known = [{**entry, "sts_observed": expiry - 365 * 86400} for entry in entries]
    return json.dumps({"sts": known, "version": 2}).encode()


def _hsts_key(name: str) -> str:
    """How Chromium's TransportSecurity file names a host: base64(sha256(the name in DNS wire form))."""
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return base64.b64encode(hashlib.sha256(wire).digest()).decode()


def _start_page(visit: str) -> bytes:
    target = json.dumps(visit).replace("</", "<\\/")
    return (HSTS_START_PAGE % {"ready": HSTS_READY_HOST, "target": target}).encode()


def _load_failed(ran: Ran) -> str | None:
    """Chromium's page-load line on stderr, if it said one."""
    for line in ran.stderr.splitlines():
        if "Page load failed" in line or "Page load timed out" in line:
            return line.split("] ", 1)[-1].strip()
    return None


def _chromium_failure(ran: Ran) -> str:
    """Chromium exits 0 whatever happened: its words are the page-load line on stderr."""
    said = _load_failed(ran)
    if said:
        return said
    if "<title>Privacy error</title>" in ran.stdout:
        return "Chromium showed its certificate warning page"
    return last_words(ran)


# Bring your own -------------------------------------------------------------------------------------

PROBE_WORDS: Final = (
    *CURL_WORDS,
    *CHROMIUM_WORDS,
    Words(r"doesn't have a known issuer|is not trusted", "ca_trust"),
    Words(r"does not match hostname|not valid for", "hostname"),
    Words(r"has expired", "validity"),
    Words(r"has been revoked", "revocation"),
)
"""Every client's words: a program the lab does not know may speak like any of them."""
PLACEHOLDERS: Final = ("url", "http_url", "host", "address", "port", "http_port", "cafile", "resolve")


@dataclass(frozen=True)
class Probe:
    """`mitmlab probe -- COMMAND ...`: any program as the victim. The command's `{url}` (and the other
    PLACEHOLDERS) are filled in; the password is in `MITMLAB_PASSWORD`; exit code 0 means it got what
    it came for."""

    command: tuple[str, ...]
    id: str = "probe"
    summary: str = "a program of your own"

    @property
    def programs(self) -> tuple[str, ...]:
        return self.command[:1]

    def job(self, target: Target) -> Job:
        values = {
            "url": target.url("https"),
            "http_url": target.url("http"),
            "host": target.name,
            "address": target.address,
            "port": str(target.https),
            "http_port": str(target.http),
            "cafile": str(target.trust.ca),
            "resolve": target.resolves()[0],
        }
        argv = tuple(_fill(part, values) for part in self.command)
        ran = yield Invocation(argv, env={"MITMLAB_PASSWORD": target.password, "MITMLAB_USER": target.user})
        done = ran.exit_code == 0
        return read_words([ran], done, PROBE_WORDS, "exit code 0" if done else last_words(ran))


def _fill(part: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        part = part.replace("{" + name + "}", value)
    return part


# The catalog ----------------------------------------------------------------------------------------

CLIENTS: Final[dict[str, Adapter]] = {
    c.id: c
    for c in (
        PythonScript("python-urllib", "Python's urllib, ssl's default context", "urllib"),
        PythonScript(
            "python-urllib-crl",
            "Python's urllib checking the CRL (VERIFY_CRL_CHECK_LEAF)",
            "urllib",
            crl=True,
        ),
        PythonScript(
            "python-urllib-careless", "Python's urllib, the rogue CA in its CA file", "urllib", careless=True
        ),
        PythonScript("requests", "requests, verifying against the lab CA", "requests"),
        Curl("curl", "curl, verifying against the lab CA"),
        Curl("curl-k", "curl -k: verification off", insecure=True),
        Curl("curl-pinned", "curl --pinnedpubkey: the bank's key pinned", pin=True),
        Curl("curl-crl", "curl --crlfile: the lab CA's CRL checked", crl=True),
        Curl("curl-careless", "curl, the rogue CA in its CA bundle", careless=True),
        Curl(
            "curl-careless-pinned",
            "curl, the rogue CA in its bundle, and the key pinned",
            careless=True,
            pin=True,
        ),
        Curl("curl-hsts-empty", "curl --hsts with an empty cache, typing http://bank.lab", hsts="empty"),
        Curl("curl-hsts-known", "curl --hsts with a cache that knows bank.lab, typing http://", hsts="known"),
        OpensslClient("openssl", "openssl s_client -verify_return_error"),
        OpensslClient("openssl-crl", "openssl s_client -verify_return_error -crl_check", crl=True),
        Chromium("chromium", "headless Chromium, a fresh profile, typing bank.lab"),
        Chromium("chromium-hsts", "headless Chromium whose profile visited bank.lab before", hsts_known=True),
        Chromium("chromium-careless", "headless Chromium, the rogue CA in its NSS store", careless=True),
    )
}
"""The `clients` view's columns, in order."""
