"""A real client's visit to bank.lab as the client role makes it: the client's trust files from the
state directory, a directory of its own, the evidence (with the password masked) and its key log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import socket
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization

from lab import events
from lab.clients.adapters import Adapter
from lab.clients.browser import Browsers
from lab.clients.job import Target, TrustFiles
from lab.clients.run import KEYLOG, visit
from lab.net import is_address
from lab.state import CLIENT_ACCOUNT, StateDir

MASK: Final = "********"
EVIDENCE_TAIL: Final = 4000
"""Characters of a program's stdout and stderr kept in the evidence (its end, where errors are)."""


def trust_files(state: StateDir) -> TrustFiles:
    spki = (
        state.server_leaf()
        .certificate.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pin = "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    rogue = state.attacker_cert("rogue-ca")
    return TrustFiles(state.ca_cert.resolve(), rogue.resolve(), state.ca_crl.resolve(), pin)


@dataclass(frozen=True)
class VisitResult:
    visited: events.Visited
    keylog: str
    """The client's TLS key log (NSS format), for the capture of this visit."""


async def make_visit(
    state: StateDir, adapter: Adapter, address: str, https: int, http: int, browsers: Browsers
) -> VisitResult:
    """Send `adapter` to bank.lab, which means `address` (its HTTPS and plain-HTTP ports) to it. A host
    name (the attacker's service, in the compose lab) is looked up first: curl's --resolve and
    Chromium's resolver rules take an address."""
    if not is_address(address):
        infos = await asyncio.get_running_loop().getaddrinfo(address, https, family=socket.AF_INET)
        address = str(infos[0][4][0])
    workdir = state.root / "client" / "visit"
    shutil.rmtree(workdir, ignore_errors=True)
    password = state.client_password()
    target = Target(address, https, http, CLIENT_ACCOUNT, password, trust_files(state), workdir)
    done = await visit(adapter, target, browsers)
    log = state.evidence("client")

    def masked(text: str) -> str:
        return text.replace(password, MASK)

    for ran in done.ran:
        log.record(
            events.ProgramRan(
                client=adapter.id,
                argv=[masked(a) for a in ran.invocation.argv],
                exit_code=ran.exit_code,
                duration_ms=round(ran.duration_ms, 1),
                stdout=masked(ran.stdout[-EVIDENCE_TAIL:]),
                stderr=masked(ran.stderr[-EVIDENCE_TAIL:]),
            )
        )
    visited = events.Visited(
        client=adapter.id,
        completed=done.reading.completed,
        words=masked(done.reading.words),
        protection=done.reading.protection,
        missing=list(done.missing),
    )
    log.record(visited)
    keylog = workdir / KEYLOG
    return VisitResult(visited, keylog.read_text(errors="replace") if keylog.exists() else "")
