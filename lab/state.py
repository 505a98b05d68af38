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
  control.secret                         the secret every control request carries
  .mitm-lab-state                        "mitm-lab state 1": the mark that says the folder is the lab's

What the lab makes here is its owner's alone: every directory 0700, every file 0600 (the folder itself
too, unless it also holds things the lab did not make). A folder with a part missing or damaged is
refused, never rebuilt over the ledger and the passwords; `clear` (`mitmlab init --fresh`) deletes only
the entries above, in a folder recognisably the lab's, and never follows a symlink.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import json
import os
import secrets
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from lab.bank.ledger import Ledger
from lab.channel.pins import KnownHosts, parse_pins
from lab.channel.verify import LabTrust
from lab.evidence import EvidenceLog
from lab.pki.authority import CertificateAuthority, Leaf, new_rsa_key, self_signed
from lab.ssh.keys import SshKeys

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

MARKER: Final = ".mitm-lab-state"
MARKER_TEXT: Final = "mitm-lab state "
STATE_VERSION: Final = 1
SUBDIRECTORIES: Final = ("pki", "pki/server", "pki/attacker", "client", "server", "evidence", "attacker")
LAB_ENTRIES: Final = frozenset(
    {"pki", "ssh", "client", "server", "evidence", "attacker", "control.secret", MARKER}
)
"""What the lab makes at the top of a state directory: all that `clear` deletes."""

DAMAGE: Final = (ValueError, TypeError, UnsupportedAlgorithm, RecursionError)
"""What parsing a file the lab did not write can raise (RecursionError: JSON nested too deep)."""
CERTIFICATES: Final = "PEM certificates"
PRIVATE_KEY: Final = "a PEM private key"
RSA_KEY: Final = "a PEM RSA private key"
CRL: Final = "a PEM certificate revocation list"
ACCOUNTS: Final = "a JSON object of account names and passwords"
SQLITE: Final = "an SQLite database"
PINS: Final = "only lines of `NAME SHA256:HEX`"
SECRET: Final = "the control secret (a line of text)"

T = TypeVar("T")


class StateError(Exception):
    """The state directory is missing, incomplete, damaged or not writable."""


class DamagedPart(ValueError):
    """A state file that does not hold what the lab wrote there."""

    def __init__(self, path: Path, holds: str) -> None:
        super().__init__(f"{path} does not hold {holds}")
        self.path = path


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
    def ssh_folder(self) -> Path:
        """The SSH stack's keys and certificates (`lab.ssh.keys`)."""
        return self.root / "ssh"

    def ssh_keys(self) -> SshKeys:
        return SshKeys(self.ssh_folder)

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
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(line)

    def take_lab_keylog(self, role: str) -> str:
        return take_text(self.lab_keylog_path(role))

    @property
    def control_secret(self) -> Path:
        return self.root / "control.secret"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    # What is there ----------------------------------------------------------------------------------

    def required_files(self) -> list[Path]:
        """Every file `create` makes that the lab reads later (a missing control secret is made anew)."""
        pki = [self.ca_cert, self.ca_key, self.ca_crl, self.server_cert, self.server_key]
        for name in ATTACKER_CERTIFICATES:
            pki += [self.attacker_cert(name), self.attacker_key(name)]
        return [*pki, *self.ssh_keys().files, self.accounts, self.ledger_template, self.ledger_path]

    def exists(self) -> bool:
        """Complete: every file the lab makes is there (whether each is sound is for `check` to say)."""
        return all(path.is_file() for path in self.required_files())

    def entries(self) -> list[str]:
        """The names in the state directory; none when there is no such directory."""
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"cannot read the state directory {self.root}: {exc.strerror}") from exc

    def lab_entries(self) -> list[str]:
        return [name for name in self.entries() if name in LAB_ENTRIES]

    def is_lab_state(self) -> bool:
        """Recognisably the lab's: its mark; or, made before there was one, the CA certificate with the
        control secret, or every file."""
        mark = self.marker
        try:
            marked = mark.is_file() and not mark.is_symlink() and mark.read_text().startswith(MARKER_TEXT)
        except (OSError, ValueError):
            marked = False
        return marked or (self.ca_cert.is_file() and self.control_secret.is_file()) or self.exists()

    def check(self) -> None:
        """Refuse a state directory with a part missing or damaged: rebuilding it would lose the ledger
        and change the passwords. Keys are parsed here, not verified: loading one verifies it."""
        missing = [path for path in self.required_files() if not path.is_file()]
        if missing and not self.is_lab_state():
            raise StateError(
                f"{self.root} is not a lab state directory (it holds {', '.join(self.lab_entries())} "
                f"but no {MARKER}): choose another --state-dir"
            )
        if missing:
            more = f" (and {len(missing) - 1} other files)" if len(missing) > 1 else ""
            raise StateError(
                f"{missing[0]}{more} is missing, so the lab state in {self.root} is incomplete and was left "
                f"as it is: {self._start_again}"
            )
        with self._reading():
            for path in (self.ca_cert, self.server_cert, *map(self.attacker_cert, ATTACKER_CERTIFICATES)):
                _parsed(path, x509.load_pem_x509_certificates, CERTIFICATES)
            for path in (self.ca_key, self.server_key, *map(self.attacker_key, ATTACKER_CERTIFICATES)):
                _parsed(path, _parse_private_key, PRIVATE_KEY)
            _parsed(self.ca_crl, x509.load_pem_x509_crl, CRL)
            _parsed(self.accounts, _parse_accounts, ACCOUNTS)
            for path in (self.ledger_template, self.ledger_path):
                _parsed(path, _parse_sqlite_header, SQLITE)
            if self.known_hosts.exists():
                _parsed(self.known_hosts, parse_pins, PINS)
            if self.control_secret.exists():
                _parsed(self.control_secret, _parse_secret, SECRET)

    @property
    def _start_again(self) -> str:
        return (
            f"to start again, run `mitmlab init --fresh --state-dir {shlex.quote(str(self.root))}` "
            "(new keys, passwords and bank)"
        )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged, missing or unreadable part as one `StateError` naming it and the way out."""
        try:
            yield
        except DamagedPart as exc:
            if exc.path == self.known_hosts:
                remedy = (
                    f"delete it (the client pins {SERVER_NAME} again on first use), or {self._start_again}"
                )
            elif exc.path == self.control_secret:
                remedy = f"delete it to make a new one, or {self._start_again}"
            else:
                remedy = self._start_again
            raise StateError(f"{exc}, so the lab state is damaged and was left as it is: {remedy}") from None
        except FileNotFoundError as exc:
            raise StateError(f"{exc.filename} is missing: {self._start_again}") from None
        except OSError as exc:
            raise StateError(f"cannot use {exc.filename or self.root}: {exc.strerror}") from None

    # Making it --------------------------------------------------------------------------------------

    def ensure(self, now: datetime.datetime | None = None) -> StateDir:
        """The state directory as it is (checked), or a new one where the lab has made nothing yet."""
        if self.lab_entries():
            self.check()
        else:
            self.create(now or datetime.datetime.now(datetime.UTC))
        return self

    def create(self, now: datetime.datetime) -> None:
        """Make the state in `root`, which holds nothing the lab made. Keys and passwords are 0600 from
        their first byte, in 0700 directories; `make_private` then makes the rest the owner's too."""
        if made := self.lab_entries():
            raise StateError(f"{self.root} already holds {', '.join(made)}: not making a lab state over it")
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_new_private(self.marker, f"{MARKER_TEXT}{STATE_VERSION}")  # first: a failed create is ours
            for sub in SUBDIRECTORIES:
                (self.root / sub).mkdir(mode=0o700)
            self._make_pki(now)
            SshKeys.make(self.ssh_folder, now)
            passwords = {name: secrets.token_urlsafe(12) for name in DEMO_BALANCES}
            Ledger.create(self.ledger_template, {n: (passwords[n], b) for n, b in DEMO_BALANCES.items()})
            _copy_private(self.ledger_template, self.ledger_path)
            accounts = json.dumps({CLIENT_ACCOUNT: passwords[CLIENT_ACCOUNT]}, indent=2)
            _write_new_private(self.accounts, accounts)
            _write_new_private(self.control_secret, secrets.token_urlsafe(32))
        except OSError as exc:
            raise StateError(f"cannot create the state directory {self.root}: {exc.strerror}") from exc
        self.make_private()

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

    def make_private(self) -> None:
        """Every directory the lab made 0700, every file in them 0600, and the state directory itself
        0700 when all it holds is the lab's (never a folder such as /tmp that the lab only shares).
        Never through a symlink: each mode is set on a descriptor opened without following one."""
        entries = self.entries()
        try:
            if set(entries) <= LAB_ENTRIES:
                self.root.chmod(0o700)
            for name in LAB_ENTRIES.intersection(entries):
                _make_private(self.root / name)
                for _, directories, files, parent in os.fwalk(self.root / name):  # top down, no symlinks
                    for inner in [*directories, *files]:
                        _make_private(inner, parent)
        except OSError as exc:
            raise StateError(f"cannot make {exc.filename} private: {exc.strerror}") from exc

    def clear(self) -> list[str]:
        """Delete what the lab made in its state directory, never following a symlink (the directory
        itself stays: it may be a mounted volume), and return the names of what else is there, which
        stays. Only in a folder recognisably the lab's, or an empty one: never whatever a typo names."""
        entries = self.entries()
        if entries and not self.is_lab_state():
            raise StateError(
                f"{self.root} is not a lab state directory (it has no {MARKER}): not clearing it"
            )
        try:
            for name in sorted(LAB_ENTRIES.intersection(entries), key=lambda name: name == MARKER):
                entry = self.root / name  # the mark last: a clear cut short can be run again
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)  # which unlinks the symlinks inside, never what they point to
                else:
                    entry.unlink()
        except OSError as exc:
            raise StateError(f"cannot clear {exc.filename}: {exc.strerror}") from exc
        return [name for name in entries if name not in LAB_ENTRIES]

    def reset(self) -> None:
        """Back to the bank as created, no pins, no evidence, no recordings; the certificates and the
        passwords stay (certificates are slow to make). Whoever has the ledger open must reopen it."""
        for role in ROLES:
            self.reset_role(role)

    def reset_role(self, role: str) -> None:
        """`reset` for one role's part only: in containers each role has a state directory of its own."""
        self.lab_keylog_path(role).unlink(missing_ok=True)
        self.evidence_path(role).unlink(missing_ok=True)
        self.evidence_path(role).parent.mkdir(mode=0o700, exist_ok=True)
        if role == "server":
            _copy_private(self.ledger_template, self.ledger_path)
        elif role == "client":
            self.known_hosts.unlink(missing_ok=True)
        elif role == "attacker":
            shutil.rmtree(self.root / "attacker" / "recordings", ignore_errors=True)
        else:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")

    # Reading it -------------------------------------------------------------------------------------

    def require(self) -> StateDir:
        """The state directory, checked; never made here (that is `ensure`)."""
        if not self.lab_entries():
            raise StateError(
                f"{self.root} is not a lab state directory yet: run `mitmlab init --state-dir "
                f"{shlex.quote(str(self.root))}` (or start `mitmlab server`, which creates it)"
            )
        self.check()
        return self

    def secret(self) -> str:
        """The lab's control secret (see `lab.control`); a state directory made before there was one
        gets one now."""
        with self._reading():
            if not self.control_secret.exists():
                with contextlib.suppress(FileExistsError):  # another role of the lab made it first
                    _write_new_private(self.control_secret, secrets.token_urlsafe(32))
            return _parsed(self.control_secret, _parse_secret, SECRET)

    def client_password(self, account: str = CLIENT_ACCOUNT) -> str:
        with self._reading():
            accounts = _parsed(self.accounts, _parse_accounts, ACCOUNTS)
        try:
            return accounts[account]
        except KeyError:
            raise StateError(f"no password for {account!r} in {self.accounts}") from None

    def trust(self) -> LabTrust:
        with self._reading():
            return LabTrust(load_certificates(self.ca_cert), KnownHosts(self.known_hosts))

    def server_leaf(self) -> Leaf:
        with self._reading():
            return load_leaf(self.server_cert, self.server_key)

    def attacker_leaf(self, name: str) -> Leaf:
        with self._reading():
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


def _write_new_private(path: Path, text: str) -> None:
    """A new file only its owner can read, from its first byte; never through a planted symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")


def _make_private(path: Path | str, parent: int | None = None) -> None:
    """A directory 0700, anything else 0600 (Linux has no lchmod: the mode is set on a descriptor). A
    symlink or a socket is left alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            return
        raise
    try:
        os.fchmod(fd, 0o700 if stat.S_ISDIR(os.fstat(fd).st_mode) else 0o600)
    finally:
        os.close(fd)


def _copy_private(source: Path, target: Path) -> None:
    """`source` over `target`, which only its owner can read, whatever its mode was."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as copy, source.open("rb") as original:
        shutil.copyfileobj(original, copy)


def _parsed(path: Path, parse: Callable[[bytes], T], holds: str) -> T:
    """What `parse` makes of the file; `DamagedPart` when it holds something else."""
    data = path.read_bytes()
    try:
        return parse(data)
    except DAMAGE:
        raise DamagedPart(path, holds) from None


def _parse_private_key(data: bytes) -> PrivateKeyTypes:
    """Parsed, not verified: an RSA key's check takes tens of milliseconds (`_parse_rsa_key` makes it)."""
    return serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)


def _parse_rsa_key(data: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def _parse_accounts(data: bytes) -> dict[str, str]:
    accounts = json.loads(data)
    if not isinstance(accounts, dict) or not all(isinstance(p, str) for p in accounts.values()):
        raise ValueError("not an object of account names and passwords")
    return accounts


def _parse_sqlite_header(data: bytes) -> None:
    if not data.startswith(b"SQLite format 3\x00"):
        raise ValueError("not an SQLite database")


def _parse_secret(data: bytes) -> str:
    secret = data.decode().strip()
    if not secret:
        raise ValueError("no secret")
    return secret


def load_certificates(path: Path) -> list[x509.Certificate]:
    return _parsed(path, x509.load_pem_x509_certificates, CERTIFICATES)


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
    key = _parsed(key_path, _parse_rsa_key, RSA_KEY)
    return Leaf(chain[0], key, chain)
