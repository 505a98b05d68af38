"""The real clients, each a program the lab runs as a victim, in the configurations the `clients` view
puts side by side (their own switches, a careless user's trust store, an HSTS cache).

Every adapter visits bank.lab the way its users do: a script or curl opens the page, finds the login
form and posts the password to where the form says; `openssl s_client` sends the login itself; a
browser is given the address (and, after `#`, what the user types, which the bank's page fills in:
it never goes on the wire before the form is submitted). What each prints is read with its own
`Words`: data, not verdicts.
"""

from __future__ import annotations

import datetime
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
    Navigation,
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
    # `net::` as Chromium says it (a failed navigation, its warning page): the net log's table of
    # constants names every error, these among them, bare.
    Words(r"net::ERR_CERT_AUTHORITY_INVALID", "ca_trust"),
    Words(r"net::ERR_CERT_COMMON_NAME_INVALID", "hostname"),
    Words(r"net::ERR_CERT_DATE_INVALID", "validity"),
    Words(r"net::ERR_CERT_REVOKED", "revocation"),
    # The redirect Chromium makes itself, before anything goes on the wire, for a host it knows.
    Words(
        r"307 Internal Redirect http://bank\.lab\S* to https://bank\.lab\S*, Non-Authoritative-Reason: HSTS",
        "hsts",
        when="completed",
    ),
)
ARRIVED: Final = "#balance"
"""The balance page's element (`BALANCE_MARK`): the customer got where they wanted."""


@dataclass(frozen=True)
class Chromium:
    id: str
    summary: str
    hsts_known: bool = False
    careless: bool = False

    @property
    def program(self) -> str:
        """Chromium's headless shell (its engine and network stack without the browser around them,
        a quarter of the CPU a visit: docs/benchmarks.md), except where the context must learn an
        HSTS host: only the whole browser has the net-internals page that teaches it."""
        return "chromium" if self.hsts_known else "chromium-headless-shell"

    @property
    def programs(self) -> tuple[str, ...]:
        """libatomic: Playwright's driver, which drives Chromium (`lab.clients.browser`), needs it."""
        return (self.program, "certutil", "libatomic")

    def job(self, target: Target) -> Job:
        trusted = (target.trust.ca, target.trust.rogue_ca) if self.careless else (target.trust.ca,)
        typed = urllib.parse.urlencode({"user": target.user, "password": target.password})
        ran = yield Navigation(
            url=f"{target.url('http')}#{typed}",  # the user types bank.lab; the page fills in the rest
            program=self.program,
            resolve=(target.name, target.address),
            trusted=trusted,
            arrived=ARRIVED,
            timeout=CLIENT_TIMEOUT,
            hsts_known=(target.name,) if self.hsts_known else (),
        )
        done = BALANCE_MARK in ran.stdout
        return read_words([ran], done, CHROMIUM_WORDS, "logged in" if done else _chromium_failure(ran))


def _chromium_failure(ran: Ran) -> str:
    """Chromium's words for the navigation that failed, or where it stopped."""
    said = [line for line in ran.stderr.splitlines() if line.strip()]
    if said:
        return said[0]
    return f"Chromium stopped without the balance page (exit code {ran.exit_code})"


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
        Chromium("chromium", "headless Chromium (its headless shell), a fresh profile, typing bank.lab"),
        Chromium(
            "chromium-hsts",
            "headless Chromium, the whole browser, knowing bank.lab as an HSTS host, as after a visit",
            hsts_known=True,
        ),
        Chromium(
            "chromium-careless",
            "headless Chromium (its headless shell), the rogue CA in its NSS store",
            careless=True,
        ),
    )
}
"""The `clients` view's columns, in order."""
