"""The state directory: everything the lab makes at run time, never committed.

STATE/
  pki/ca.crt.pem                         the lab CA that the client trusts
  pki/ca.key.pem                         its key (held by the CA only)
  pki/ca.crl.pem                         the CA's revocation list (the `revoked` certificate is on it)
  pki/server/bank.lab.{crt,key}.pem      the server's certificate and key
  pki/attacker/...                       what an attacker holds: see ATTACKER_CERTIFICATES
  client/known_hosts                     pinned server keys (trust on first use)
  client/accounts.json                   the client's own credentials
  server/bank.sqlite3                    accounts and the append-only transfer ledger
  server/bank.template.sqlite3           the bank as created, for `reset`
  attacker/recordings/                   what key-compromise recorded
  attacker/mitmproxy/                    mitmproxy's confdir
  evidence/<role>.jsonl                  what each role saw
  control.secret                         the secret every control request carries (mode 0600)
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.bank.ledger import Ledger
from lab.evidence import EvidenceLog
from lab.pki.authority import CertificateAuthority, Leaf, new_rsa_key, self_signed
from lab.pki.pins import KnownHosts
from lab.pki.verify import LabTrust

YEAR: Final = datetime.timedelta(days=365)
SERVER_NAME: Final = "bank.lab"
ATTACKER_NAME: Final = "attacker.lab"
DEMO_BALANCES: Final = {"alice": 1000, "bob": 1000, "eve": 0}
"""alice is the client's account, bob the payee she pays, eve the attacker's account."""
CLIENT_ACCOUNT: Final = "alice"

ROLES: Final = ("client", "attacker", "server")

ATTACKER_CERTIFICATES: Final = {
    "self-signed": "a self-signed certificate for bank.lab: no CA vouches for it",
    "attacker.lab": "a certificate the lab CA really issued, to attacker.lab: the attacker bought one too",
    "expired": "the server's previous bank.lab certificate, expired, whose key leaked",
    "revoked": "a bank.lab certificate still in date whose key leaked: the lab CA has revoked it",
    "rogue-ca": "the attacker's own CA, which a careless user may have installed",
    "rogue-bank.lab": "a bank.lab certificate issued by the rogue CA",
}


class StateError(Exception):
    """The state directory is missing, incomplete or not writable."""


@dataclass(frozen=True)
class StateDir:
    root: Path

    # Paths ------------------------------------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        return self.root / "pki" / "ca.crt.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "pki" / "ca.key.pem"

    @property
    def ca_crl(self) -> Path:
        return self.root / "pki" / "ca.crl.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "pki" / "server" / f"{SERVER_NAME}.crt.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "pki" / "server" / f"{SERVER_NAME}.key.pem"

    def attacker_cert(self, name: str) -> Path:
        return self.root / "pki" / "attacker" / f"{name}.crt.pem"

    def attacker_key(self, name: str) -> Path:
        return self.root / "pki" / "attacker" / f"{name}.key.pem"

    @property
    def known_hosts(self) -> Path:
        return self.root / "client" / "known_hosts"

    @property
    def accounts(self) -> Path:
        return self.root / "client" / "accounts.json"

    @property
    def ledger_path(self) -> Path:
        return self.root / "server" / "bank.sqlite3"

    @property
    def ledger_template(self) -> Path:
        """The bank as created, copied over the ledger by `reset`."""
        return self.root / "server" / "bank.template.sqlite3"

    def evidence_path(self, role: str) -> Path:
        return self.root / "evidence" / f"{role}.jsonl"

    def lab_keylog_path(self, role: str) -> Path:
        """The keys of `role`'s lab-channel sessions since the last take (lab.channel.keylog)."""
        return self.root / "evidence" / f"{role}.lab.keylog"

    def log_lab_keys(self, role: str, line: str) -> None:
        """Appended to a file only its owner reads: the keys open the client's password."""
        path = self.lab_keylog_path(role)
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(line)

    def take_lab_keylog(self, role: str) -> str:
        return take_text(self.lab_keylog_path(role))

    @property
    def control_secret(self) -> Path:
        return self.root / "control.secret"

    # Making it --------------------------------------------------------------------------------------

    def exists(self) -> bool:
        files = (self.server_key, self.ca_crl, self.ledger_template, self.accounts)
        return all(path.exists() for path in files)

    def ensure(self, now: datetime.datetime | None = None) -> StateDir:
        """Create the state directory unless it is already complete."""
        if not self.exists():
            self.create(now or datetime.datetime.now(datetime.UTC))
        return self

    def create(self, now: datetime.datetime) -> None:
        try:
            for sub in ("pki/server", "pki/attacker", "client", "server", "evidence"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._make_pki(now)
            passwords = {name: secrets.token_urlsafe(12) for name in DEMO_BALANCES}
            Ledger.create(self.ledger_template, {n: (passwords[n], b) for n, b in DEMO_BALANCES.items()})
            shutil.copyfile(self.ledger_template, self.ledger_path)
            _write_private(self.accounts, json.dumps({CLIENT_ACCOUNT: passwords[CLIENT_ACCOUNT]}, indent=2))
            _write_private(self.control_secret, secrets.token_urlsafe(32))
        except OSError as exc:
            raise StateError(f"cannot create the state directory {self.root}: {exc.strerror}") from exc

    def _make_pki(self, now: datetime.datetime) -> None:
        # The CA is older than the expired certificate it once issued.
        ca = CertificateAuthority.create("mitm-lab CA", now=now, not_before=now - 5 * YEAR)
        ca.write(self.ca_cert, self.ca_key)
        ca.issue(SERVER_NAME, now=now).write(self.server_cert, self.server_key)
        old_key = new_rsa_key()
        forged = {
            "self-signed": self_signed(SERVER_NAME, now=now),
            "attacker.lab": ca.issue(ATTACKER_NAME, now=now),
            "expired": ca.issue(
                SERVER_NAME,
                now=now,
                not_before=now - 2 * YEAR,
                not_after=now - YEAR,
                key=old_key,
            ),
            "revoked": ca.issue(SERVER_NAME, now=now, not_before=now - YEAR / 4),
        }
        for name, leaf in forged.items():
            leaf.write(self.attacker_cert(name), self.attacker_key(name))
        crl = ca.revocation_list([forged["revoked"].certificate], now=now)
        self.ca_crl.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        rogue = CertificateAuthority.create("Totally Legit Proxy CA", now=now)
        rogue.write(self.attacker_cert("rogue-ca"), self.attacker_key("rogue-ca"))
        rogue.issue(SERVER_NAME, now=now).write(
            self.attacker_cert("rogue-bank.lab"), self.attacker_key("rogue-bank.lab")
        )

    def clear(self) -> None:
        """Empty the state directory (the directory itself stays: it may be a mounted volume). Only a
        lab state directory, or an empty one: never whatever directory a typo names."""
        if not self.root.is_dir():
            return
        if any(self.root.iterdir()) and not (self.ca_cert.exists() or self.control_secret.exists()):
            raise StateError(f"{self.root} is not a lab state directory: not clearing it")
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def reset(self) -> None:
        """Back to the bank as created, no pins, no evidence, no recordings; the certificates and the
        passwords stay (certificates are slow to make). Whoever has the ledger open must reopen it."""
        for role in ROLES:
            self.reset_role(role)

    def reset_role(self, role: str) -> None:
        """`reset` for one role's part only: in containers each role has a state directory of its own."""
        self.lab_keylog_path(role).unlink(missing_ok=True)
        self.evidence_path(role).unlink(missing_ok=True)
        self.evidence_path(role).parent.mkdir(exist_ok=True)
        if role == "server":
            shutil.copyfile(self.ledger_template, self.ledger_path)
        elif role == "client":
            self.known_hosts.unlink(missing_ok=True)
        elif role == "attacker":
            shutil.rmtree(self.root / "attacker" / "recordings", ignore_errors=True)
        else:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")

    # Reading it -------------------------------------------------------------------------------------

    def require(self) -> StateDir:
        if not self.exists():
            raise StateError(
                f"{self.root} is not a lab state directory yet: run `mitmlab init --state-dir {self.root}` "
                "(or start `mitmlab server`, which creates it)"
            )
        return self

    def secret(self) -> str:
        """The lab's control secret (see `lab.control`); a state directory made before there was one
        gets one now."""
        try:
            if not self.control_secret.exists():
                _write_private(self.control_secret, secrets.token_urlsafe(32))
            secret = self.control_secret.read_text().strip()
        except OSError as exc:
            raise StateError(
                f"cannot read the lab's control secret {self.control_secret}: {exc.strerror}"
            ) from exc
        if not secret:
            raise StateError(
                f"the lab's control secret {self.control_secret} is empty: delete it to make a new one"
            )
        return secret

    def client_password(self, account: str = CLIENT_ACCOUNT) -> str:
        accounts: dict[str, str] = json.loads(self.accounts.read_text())
        try:
            return accounts[account]
        except KeyError:
            raise StateError(f"no password for {account!r} in {self.accounts}") from None

    def trust(self) -> LabTrust:
        return LabTrust(load_certificates(self.ca_cert), KnownHosts(self.known_hosts))

    def server_leaf(self) -> Leaf:
        return load_leaf(self.server_cert, self.server_key)

    def attacker_leaf(self, name: str) -> Leaf:
        return load_leaf(self.attacker_cert(name), self.attacker_key(name))

    def evidence(self, role: str) -> EvidenceLog:
        return EvidenceLog(self.evidence_path(role), role)


def take_text(path: Path) -> str:
    """The text of a log so far, emptied (its writer goes on appending); "" when there is none."""
    try:
        with path.open("r+", errors="replace") as file:
            text = file.read()
            file.truncate(0)
    except FileNotFoundError:
        return ""
    return text


def _write_private(path: Path, text: str) -> None:
    """A file only its owner can read, from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")


def load_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def load_leaf(cert_path: Path, key_path: Path) -> Leaf:
    """The certificate chain and its key. Loading an RSA key checks it, which takes tens of
    milliseconds: the same files (same size and time) are loaded once per process."""
    return _load_leaf(cert_path, key_path, _version(cert_path), _version(key_path))


def _version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=64)
def _load_leaf(cert_path: Path, key_path: Path, *versions: tuple[int, int]) -> Leaf:
    chain = tuple(load_certificates(cert_path))
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise StateError(f"{key_path} does not hold an RSA key")
    return Leaf(chain[0], key, chain)
