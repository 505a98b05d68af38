"""What a victim is given, what it runs, and what the lab reads off it: sans-IO, as h11 is.

A client's adapter (`lab.clients.adapters`) writes its visit to bank.lab as a generator, a `Job`: it
yields each program invocation (or, for a browser, a navigation) and is sent back what it did (`Ran`),
and finally returns its `Reading`. `lab.clients.run` does the processes and `lab.clients.browser` the
browsers; the adapters do no I/O at all, so what a client is asked to do and how its output is read can
be tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from lab.state import SERVER_NAME

LINE_LIMIT: Final = 300
BALANCE_MARK: Final = 'id="balance"'
"""On the bank's balance page (`lab.bank.web`): the customer logged in and got where they wanted."""


@dataclass(frozen=True)
class TrustFiles:
    """What a client can be told to trust or check, from the lab PKI."""

    ca: Path
    """The lab CA: what every client trusts."""
    rogue_ca: Path
    """The attacker's CA, which the careless user installed."""
    crl: Path
    """The lab CA's revocation list."""
    pin: str
    """`sha256//BASE64` of the real bank's public key (curl's `--pinnedpubkey` form)."""


@dataclass(frozen=True)
class Target:
    """bank.lab as this client reaches it: the address its name means here, and the two ports."""

    address: str
    https: int
    http: int
    user: str
    password: str
    trust: TrustFiles
    workdir: Path
    """This visit's own directory: cookie jars, HSTS caches, browser profiles, the key log."""
    name: str = SERVER_NAME

    def url(self, scheme: Literal["https", "http"], path: str = "/") -> str:
        port = self.https if scheme == "https" else self.http
        return f"{scheme}://{self.name}:{port}{path}"

    def resolves(self) -> list[str]:
        """curl's `--resolve` for both ports."""
        return [f"{self.name}:{port}:{self.address}" for port in (self.https, self.http)]


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    """Added to the environment (HOME for a browser, say)."""
    stdin: bytes = b""
    files: dict[str, bytes] = field(default_factory=dict)
    """Written into the workdir first (a cookie jar, an HSTS cache, credentials), by relative path."""
    collect: tuple[str, ...] = ()
    """Files of the workdir read back after it ran."""


@dataclass(frozen=True)
class Navigation:
    """A visit in a browser the lab drives over DevTools (`lab.clients.browser`): a fresh context of
    the browser (`program`) that trusts `trusted`, sent to `url`. Its `Ran` holds the page it ended
    on (stdout), Chromium's words for each navigation that failed (stderr) and every response,
    internal redirects included (collected as "responses"); exit code 0 when the visit ended, None
    when the time ran out, 1 when the browser ended in the middle (it crashed, or hung and the lab
    closed it), 127 when it could not be made ready."""

    url: str
    program: str
    """The Chromium program: Debian's `chromium-headless-shell` or the whole browser, `chromium`."""
    resolve: tuple[str, str]
    """The name and the address it means to this browser (`--host-resolver-rules`)."""
    trusted: tuple[Path, ...]
    """The CA certificates in the browser's NSS store."""
    arrived: str
    """A CSS selector: the page that holds it is where the client wanted to get."""
    timeout: float
    hsts_known: tuple[str, ...] = ()
    """Names the context knows as HSTS hosts before it goes, as after an earlier visit."""

    @property
    def resolver_rules(self) -> str:
        """Only `resolve` resolves: Chromium dials no one else (docs/tls.md)."""
        name, address = self.resolve
        return f"--host-resolver-rules=MAP {name} {address}, MAP * ~NOTFOUND"

    @property
    def argv(self) -> tuple[str, ...]:
        """How the evidence shows it: the browser, what it was told, where it went."""
        known = tuple(f"--hsts-known={name}" for name in self.hsts_known)
        return (f"{self.program} (DevTools)", self.resolver_rules, *known, self.url)


@dataclass(frozen=True)
class Ran:
    invocation: Invocation | Navigation
    exit_code: int | None
    """None: it did not end by itself within its time and was killed."""
    stdout: str
    stderr: str
    duration_ms: float
    collected: dict[str, str] = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"


@dataclass(frozen=True)
class Reading:
    """What the lab reads off a visit."""

    completed: bool
    """The client got what it came for (the balance page, the login answered)."""
    words: str
    """The client's own words: the line of its output that tells, or why there is none."""
    protection: str | None = None
    """The protection those words correspond to (`WORDS`), if any."""


Job = Generator[Invocation | Navigation, Ran, Reading]


@dataclass(frozen=True)
class Words:
    """A client's words that correspond to a protection: `pattern` (a regular expression) in its
    output, when it `refused` (failed) or, for an upgrade such as HSTS, when it `completed`."""

    pattern: str
    protection: str
    when: Literal["refused", "completed"] = "refused"
    say: str | None = None
    """The words to quote, where the output that holds them is no line a person reads (a JSON log)."""


OPENSSL_VERIFY: Final = (
    Words(r"self[- ]signed certificate", "ca_trust"),
    Words(r"unable to get local issuer certificate", "ca_trust"),
    Words(r"[Hh]ostname mismatch|no alternative certificate subject name matches", "hostname"),
    Words(r"certificate has expired|certificate is not yet valid", "validity"),
    Words(r"certificate revoked", "revocation"),
)
"""OpenSSL's verify errors, which curl, Python's ssl and `openssl s_client` all print in their words."""


def read_words(ran: Sequence[Ran], completed: bool, table: Sequence[Words], why: str) -> Reading:
    """The reading of a visit: the first line of the output (last program first) that one of `table`
    matches for how the visit ended; else `why`, with no protection."""
    when = "completed" if completed else "refused"
    for step in reversed(ran):
        for text in (step.stderr, step.stdout, *step.collected.values()):
            for words in (w for w in table if w.when == when):
                match = re.search(words.pattern, text)
                if match:
                    return Reading(completed, words.say or _line_of(text, match), words.protection)
    return Reading(completed, why)


def last_words(ran: Ran) -> str:
    """What a program said last, for a failure no table names (or that it said nothing)."""
    lines = [line.strip() for line in ran.stderr.splitlines() if line.strip()]
    said = lines[-1] if lines else "no output on stderr"
    if ran.timed_out:
        return f"did not finish in time (killed); last said: {said}"
    return f"exit code {ran.exit_code}: {said}"


def _line_of(text: str, match: re.Match[str]) -> str:
    """The line the words are on (or the words alone, if that line is too long to quote)."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.start())
    line = text[start : end if end != -1 else len(text)].strip()
    return line if len(line) <= LINE_LIMIT else match.group(0)
