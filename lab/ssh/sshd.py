"""The real OpenSSH server for the SSH stack, with the lab's customer in it, on a machine that must not
gain a user.

Password login needs the user in /etc/shadow and sshd running as root. So sshd runs as root in a
private mount namespace and its own PID namespace (`unshare --mount --propagation private --pid
--fork --kill-child`), where the lab's /etc/passwd, /etc/group (the real ones plus the customer) and
/etc/shadow (the customer alone: the host's hashes are never copied) are bind-mounted over the real
ones, and a small tmpfs covers /home with the customer's home, the lab's files and sshd's own. Nothing
of it is seen outside: the host's /etc and /home are untouched, and when sshd (the namespace's PID 1)
exits the kernel kills every session it started, so no process is left behind.

The customer's login shell notes every command it is asked to run in `~/.lab-commands` (NUL-separated)
before running it with /bin/sh: that file is the lab's proof that a command ran on the real server, as
the customer, whoever sent it.

Layout of `folder` (root's, 0700) on the host, and where each part is inside the namespace:

    sshd_config, sshd.log, sshd.pid        /home/.lab-server/   (root's alone)
    etc/passwd, etc/group, etc/shadow      /etc/*               (bound over the real files)
    lab/shell, lab/authorized_keys/<user>  /home/.lab/          (read-only, everybody may read)
    home/<user>/                           /home/<user>/        (the customer's, 0700)
    mnt/                                   the tmpfs is made here, then moved to /home
    the keys folder (`SshKeys`)            /home/.lab-keys/     (root's alone)

Everything sshd reads is under /home inside, so a state folder anywhere (even under /home or /run,
which the namespace covers) works.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from lab.files import SHARED, make_fresh_folder, write_private, write_shared
from lab.net import Address
from lab.ssh.keys import SshKeys

SSHD: Final = Path("/usr/sbin/sshd")
"""By absolute path: sshd refuses to re-execute itself otherwise ("sshd re-exec requires execution
with an absolute path")."""
UNSHARE: Final = Path("/usr/bin/unshare")
CUSTOMER: Final = "alice"
FIRST_ID: Final = 61000
"""Where the customer's uid and gid are looked for: above Debian's normal users, below its reserved
range, and checked against every account the host knows (NSS included), so files the customer writes
in the state folder belong to nobody real."""
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 5.0
LOGIN_GRACE_TIME: Final = 20
"""Seconds sshd gives a connection to log in: longer than any client the lab runs waits, shorter than
a stuck test."""

INSIDE_HOME: Final = "/home"
INSIDE_SERVER: Final = "/home/.lab-server"
INSIDE_KEYS: Final = "/home/.lab-keys"
INSIDE_LAB: Final = "/home/.lab"
GIT_AUTHOR: Final = (("NAME", "bank"), ("EMAIL", "bank@bank.lab"))
"""Who made the customer's repository's one commit."""
JOURNAL: Final = ".lab-commands"

LOGIN_SHELL: Final = """#!/bin/sh
# The lab customer's login shell: notes each command it is asked to run (NUL after each) in the
# customer's home, then runs it with /bin/sh, as sshd would have.
if [ "$1" = "-c" ]; then
    printf '%s\\0' "$2" >> "$HOME/.lab-commands"
    exec /bin/sh -c "$2"
fi
exec /bin/sh "$@"
"""

NAMESPACE_SETUP: Final = """set -eu
server=$1 keys=$2 user=$3
mount -t tmpfs -o mode=0755,size=1m mitm-lab-home "$server/mnt"
mkdir -m 0700 "$server/mnt/.lab-server" "$server/mnt/.lab-keys"
mkdir -m 0755 "$server/mnt/.lab" "$server/mnt/$user"
mount --bind "$server" "$server/mnt/.lab-server"
mount --bind "$keys" "$server/mnt/.lab-keys"
mount --bind "$server/lab" "$server/mnt/.lab"
mount -o remount,bind,ro "$server/mnt/.lab"
mount --bind "$server/home/$user" "$server/mnt/$user"
for name in passwd group shadow; do mount --bind "$server/etc/$name" "/etc/$name"; done
mount --move "$server/mnt" /home
if [ ! -d /run/sshd ]; then
    mount -t tmpfs -o mode=0755,size=1m mitm-lab-run /run
    mkdir -m 0755 /run/sshd
fi
exec "$4" -D -e -f /home/.lab-server/sshd_config
"""
"""Run by /bin/sh as root inside the new namespaces; `exec` makes sshd the namespace's PID 1. The
tmpfs is filled where the state folder can still be seen, then moved over /home. Without /run/sshd
(sshd's privilege separation folder, which Debian's service makes at boot) a private /run holds one:
the host's /run is not written."""


class SshdError(Exception):
    """The lab's sshd could not be started or stopped; the message says why in one sentence."""


class NeedsRootError(SshdError):
    """Password login needs sshd as root (it reads /etc/shadow and becomes the user), and the private
    mount namespace that keeps the customer off the host needs root too."""


class MissingProgramError(SshdError):
    """sshd (Debian's openssh-server) or unshare (util-linux) is not installed."""


class KeyModeError(SshdError):
    """A host key others may read: sshd would say "UNPROTECTED PRIVATE KEY FILE" and "no hostkeys
    available -- exiting."."""


class PrivsepDirError(SshdError):
    """/run/sshd, sshd's privilege separation folder, is unusable (not root's, or writable by others)."""


class SshdExitedError(SshdError):
    """sshd exited while starting; `words` is what it said."""

    def __init__(self, words: str, code: int | None) -> None:
        super().__init__(f"sshd exited at start (code {code}): {words}")
        self.words = words
        self.code = code


class SshdTimeoutError(SshdError):
    """sshd did not say it was listening in time."""


# What sshd says in its log, as typed records (sans-IO).


@dataclass(frozen=True)
class Listening:
    host: str
    port: int


@dataclass(frozen=True)
class LoginAccepted:
    """What sshd says when it lets a user in: "Accepted password for alice from ..." or "Accepted
    publickey for alice from ... ssh2: ED25519 SHA256:..."."""

    user: str
    method: str
    peer: Address
    key: str | None
    """The public key's fingerprint (`SHA256:...`) for public-key login."""


@dataclass(frozen=True)
class LoginFailed:
    """ "Failed password for alice from ..." / "Failed publickey for ..." / "... for invalid user bob"."""

    user: str
    method: str
    peer: Address
    key: str | None
    invalid_user: bool


@dataclass(frozen=True)
class SessionStarted:
    """ "Starting session: command for alice from ...": sshd started the user's command or shell."""

    user: str
    kind: str
    peer: Address


SshdRecord = Listening | LoginAccepted | LoginFailed | SessionStarted

_LISTENING = re.compile(r"Server listening on (?P<host>\S+) port (?P<port>\d+)\.")
_LOGIN = re.compile(
    r"(?P<verdict>Accepted|Failed) (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>\S+)"
    r" from (?P<host>\S+) port (?P<port>\d+) ssh2(?:: \S+ (?P<key>\S+))?"
)
_SESSION = re.compile(
    r"Starting session: (?P<kind>.+?)(?: on \S+)? for (?P<user>\S+) from (?P<host>\S+) port (?P<port>\d+)"
)


def parse_line(line: str) -> SshdRecord | None:
    """The record one line of sshd's log says, or None for the lines the lab does not read."""
    if found := _LISTENING.fullmatch(line):
        return Listening(found["host"], int(found["port"]))
    if found := _LOGIN.match(line):
        peer = Address(found["host"], int(found["port"]))
        if found["verdict"] == "Accepted":
            return LoginAccepted(found["user"], found["method"], peer, found["key"])
        return LoginFailed(found["user"], found["method"], peer, found["key"], bool(found["invalid"]))
    if found := _SESSION.match(line):
        return SessionStarted(found["user"], found["kind"], Address(found["host"], int(found["port"])))
    return None


class LineReader:
    """Whole lines of a file another process appends to: a line still being written waits for its end."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def read(self) -> list[str]:
        try:
            with self._path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return complete.decode(errors="replace").splitlines()


def parse_journal(data: bytes) -> list[str]:
    """The commands the customer's login shell noted, in order (the last one may still be unfinished if
    the file is read while it is written: it is left out)."""
    return [command.decode(errors="replace") for command in data.split(b"\0")[:-1]]


# The customer's account, as the namespace's /etc files say it.


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def home(self) -> str:
        return f"{INSIDE_HOME}/{self.name}"

    def passwd_line(self) -> str:
        return f"{self.name}:x:{self.uid}:{self.gid}:mitm-lab customer:{self.home}:{INSIDE_LAB}/shell\n"

    def group_line(self) -> str:
        return f"{self.name}:x:{self.gid}:\n"

    def shadow_line(self, password_hash: str) -> str:
        """Aging fields left empty: a 0 in "last changed" would make sshd demand a new password."""
        return f"{self.name}:{password_hash}:::::::\n"

    def with_account(self, table: str, line: str) -> str:
        """`table` (/etc/passwd or /etc/group) with this account's `line` instead of any of the same
        name: inside the namespace, that name is the lab's customer."""
        kept = [row for row in table.splitlines() if row.split(":", 1)[0] != self.name]
        return "\n".join([*kept, line.rstrip("\n")]) + "\n"


def free_id(taken: set[int], start: int = FIRST_ID) -> int:
    """The first id from `start` that is neither in `taken` nor known to the host as a user or group."""
    candidate = start
    while candidate in taken or _known(candidate):
        candidate += 1
    return candidate


def _known(number: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(number)
        except KeyError:
            continue
        return True
    return False


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash (`$6$...`) that /etc/shadow holds, made by `openssl passwd -6` with a fresh
    salt: Python's `crypt` is deprecated (gone in 3.13), and the password goes through a pipe, never on
    a command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MissingProgramError("openssl is not installed: it makes the customer's password hash")
    result = subprocess.run(
        [openssl, "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, timeout=10
    )
    hashed = result.stdout.strip()
    if result.returncode != 0 or not hashed.startswith("$6$"):
        raise SshdError(f"openssl passwd -6 failed: {result.stderr.strip()}")
    return hashed


@dataclass(frozen=True)
class SshdConfig:
    """sshd_config for the lab's server. Every path is as seen inside the namespace."""

    listen: Address
    user: str
    host_key: str
    host_certificate: str
    login_grace_time: int = LOGIN_GRACE_TIME

    def render(self) -> str:
        return "\n".join(
            [
                f"ListenAddress {self.listen.host}",
                f"Port {self.listen.port}",
                f"HostKey {self.host_key}",
                f"HostCertificate {self.host_certificate}",
                f"PidFile {INSIDE_SERVER}/sshd.pid",
                "PasswordAuthentication yes",
                # Off: it would change OpenSSH's prompt and its "Permission denied (...)" list.
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                f"AuthorizedKeysFile {INSIDE_LAB}/authorized_keys/%u",
                # The lab's files belong to root and sit in the state folder: sshd's checks of the
                # user's own folders do not apply.
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin no",
                f"AllowUsers {self.user}",
                # VERBOSE: "Accepted password", "Failed publickey", "Starting session" are read.
                "LogLevel VERBOSE",
                f"LoginGraceTime {self.login_grace_time}",
                "MaxStartups 100",
                "PrintMotd no",
                "PrintLastLog no",
                "UseDNS no",
                "X11Forwarding no",
                "",
            ]
        )


class Sshd:
    """The real sshd on `listen`, serving `customer` with `password` and the customer's key from `keys`.
    A context manager: leaving it stops sshd and every session it started."""

    def __init__(
        self,
        folder: Path,
        keys: SshKeys,
        listen: Address,
        password: str,
        customer: str = CUSTOMER,
    ) -> None:
        self.folder = folder
        self.keys = keys
        self.listen = listen
        self.password = password
        self.customer = customer
        self.account: Account | None = None
        """The customer as the namespace knows it, once `prepare` has made it."""
        self._process: subprocess.Popen[bytes] | None = None
        self._inside_pid: int | None = None
        self._log = LineReader(self.log_path)

    @property
    def log_path(self) -> Path:
        return self.folder / "sshd.log"

    @property
    def journal_path(self) -> Path:
        return self.folder / "home" / self.customer / JOURNAL

    def prepare(self) -> Account:
        """Write the namespace's files: config, /etc files, the customer's home, login shell and
        authorised key. Checks what would make sshd refuse to start, with the lab's words."""
        _require_root_and_programs()
        _require_private_keys(self.keys)
        _require_usable_privsep_dir()
        make_fresh_folder(self.folder)
        passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
        ids = (row.split(":")[2] for row in (passwd + group).splitlines() if row.count(":") >= 3)
        number = free_id({int(found) for found in ids if found.isdigit()})
        account = Account(self.customer, number, number)
        for name in ("etc", "mnt", "lab", "lab/authorized_keys", "home"):
            make_fresh_folder(self.folder / name)
        for name in ("lab", "lab/authorized_keys"):
            (self.folder / name).chmod(0o755)  # the customer's processes read what is in them
        write_shared(self.folder / "etc/passwd", account.with_account(passwd, account.passwd_line()))
        write_shared(self.folder / "etc/group", account.with_account(group, account.group_line()))
        write_private(self.folder / "etc/shadow", account.shadow_line(hash_password(self.password)))
        _write_executable(self.folder / "lab/shell", LOGIN_SHELL)
        write_shared(self.folder / "lab/authorized_keys" / self.customer, self.keys.authorized_key())
        home = self.folder / "home" / self.customer
        make_fresh_folder(home)
        os.chown(home, account.uid, account.gid)
        config = SshdConfig(
            self.listen,
            self.customer,
            host_key=f"{INSIDE_KEYS}/{self.keys.server_key.name}",
            host_certificate=f"{INSIDE_KEYS}/{self.keys.server_certificate.name}",
        )
        write_private(self.folder / "sshd_config", config.render())
        self.account = account
        return account

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Prepare, start sshd and return once it listens; a typed error (with sshd's own words when it
        said any) otherwise, and nothing left running."""
        self.prepare()
        log = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._process = subprocess.Popen(
                [
                    str(UNSHARE),
                    "--mount",
                    "--propagation",
                    "private",
                    "--pid",
                    "--fork",
                    "--kill-child=TERM",
                    "--",
                    "/bin/sh",
                    "-c",
                    NAMESPACE_SETUP,
                    "mitm-lab-sshd",
                    str(self.folder),
                    str(self.keys.folder),
                    self.customer,
                    str(SSHD),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C meant for the lab reaches sshd through stop() only
            )
        finally:
            os.close(log)
        try:
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        said: list[str] = []
        while time.monotonic() < deadline:
            for line in self._log.read():
                said.append(line)
                if parse_line(line) == Listening(self.listen.host, self.listen.port):
                    self._inside_pid = _child_of(self._process.pid)
                    return
            if (code := self._process.poll()) is not None:
                said += self._log.read()
                raise _start_error(said, code)
            time.sleep(0.01)
        raise SshdTimeoutError(f"sshd did not listen on {self.listen} within {timeout} s: {' / '.join(said)}")

    def seed_repository(self, relative: str, work: Path) -> None:
        """A bare git repository at `relative` in the customer's home (`~/bank.git`), with one commit,
        the customer's own: what a `git clone` over SSH fetches (seed 002 §四). `work`: a folder of the
        lab's for the commit."""
        assert self.account is not None, "start() first"
        names = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER") for what, value in GIT_AUTHOR}
        env = {**os.environ, **names}
        bare = self.folder / "home" / self.customer / relative.removeprefix("~/")
        subprocess.run(["git", "init", "-q", str(work)], check=True, env=env, capture_output=True)
        (work / "README").write_text("the bank's code\n")
        for argv in (
            ["add", "README"],
            ["commit", "-q", "-m", "first"],
            ["clone", "-q", "--bare", ".", str(bare)],
        ):
            subprocess.run(["git", "-C", str(work), *argv], check=True, env=env, capture_output=True)
        for path in [bare, *bare.rglob("*")]:
            os.chown(path, self.account.uid, self.account.gid)

    def new_records(self) -> list[SshdRecord]:
        """The records of sshd's log since the last call (or since it listened)."""
        return [record for line in self._log.read() if (record := parse_line(line)) is not None]

    def records(self) -> list[SshdRecord]:
        """Every record of sshd's log so far."""
        lines = self.log_path.read_bytes().decode(errors="replace").splitlines()
        return [record for line in lines if (record := parse_line(line)) is not None]

    def commands(self) -> list[str]:
        """The commands that ran on this server as the customer, in order."""
        try:
            return parse_journal(self.journal_path.read_bytes())
        except FileNotFoundError:
            return []

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop sshd and wait until it is gone. Every process of its namespace dies with it: when a PID
        namespace's PID 1 exits, the kernel kills the rest and waits for them before unshare, sshd's
        parent, sees it exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._signal(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(process, signal.SIGKILL)
            process.wait(timeout)

    def _signal(self, process: subprocess.Popen[bytes], number: signal.Signals) -> None:
        """sshd itself when it is known (unshare then reaps it and exits with it), else unshare, whose
        `--kill-child` passes SIGTERM on to sshd."""
        with contextlib.suppress(ProcessLookupError):
            if self._inside_pid is not None:
                os.kill(self._inside_pid, number)
            if self._inside_pid is None or number == signal.SIGKILL:
                process.send_signal(number)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _require_root_and_programs() -> None:
    if os.geteuid() != 0:
        raise NeedsRootError(
            "the SSH server needs root: sshd reads /etc/shadow for password login, and the lab keeps "
            "its customer off this machine in a private mount namespace"
        )
    for program, package in ((SSHD, "openssh-server"), (UNSHARE, "util-linux")):
        if not os.access(program, os.X_OK):
            raise MissingProgramError(f"{program} is not installed (Debian's {package})")


def _require_private_keys(keys: SshKeys) -> None:
    path = keys.server_key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyModeError(
            f"{path} has mode {mode:04o}: sshd refuses a host key others may read (it must be 0600)"
        )


def _require_usable_privsep_dir() -> None:
    """An existing /run/sshd must be as sshd wants it; a missing one is made inside the namespace."""
    try:
        found = os.lstat("/run/sshd")
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != 0 or found.st_mode & 0o022:
        raise PrivsepDirError(
            f"/run/sshd must be a folder of root's that nobody else can write "
            f"(it is uid {found.st_uid}, mode {stat.S_IMODE(found.st_mode):04o})"
        )


def _write_executable(path: Path, text: str) -> None:
    write_shared(path, text)
    path.chmod(SHARED | 0o111)


def _start_error(said: list[str], code: int) -> SshdError:
    words = " / ".join(line for line in said if line.strip()) or "(nothing)"
    if "privilege separation directory" in words:
        return PrivsepDirError(f"sshd: {words}")
    if "UNPROTECTED PRIVATE KEY FILE" in words or "no hostkeys available" in words:
        return KeyModeError(f"sshd: {words}")
    return SshdExitedError(words, code)


def _child_of(pid: int) -> int | None:
    """The first child of `pid` (unshare's: sshd, PID 1 of its namespace)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    return None
