"""The SSH stack's keys, made at run time into a folder of the state (0700, every file 0600): the real
server's host key and its host certificate from the lab's SSH CA, the customer's key pair, and the
attacker's own host key with a host certificate from its own ("rogue") SSH CA. Plus the lines a
client's known_hosts holds for each protection: a pinned key, or an `@cert-authority` line.

All keys are ed25519, as OpenSSH makes by default. Files are in the formats OpenSSH reads: the private
key in its own format, public keys and certificates as one `algorithm base64 comment` line.

No certificate is named `<key>-cert.pub` beside its key on purpose: asyncssh, given a key's file name,
also loads such a file, and an attacker presenting its plain key (`host-key-swap`) must not present its
certificate by accident. The relay loads keys as objects (`host_key`, `host_certificate`) anyway.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncssh

from lab.files import own_folder, write_private

SERVER_NAME: Final = "server.lab"
"""The name the client knows the server by (`ssh -o HostKeyAlias=server.lab`): its known_hosts entries
and the principal of the server's host certificate. The alias replaces `[host]:port`, so a relay on
another port is checked against the same entries, as it would be on the server's own address."""
ALGORITHM: Final = "ssh-ed25519"
VALIDITY: Final = datetime.timedelta(days=30)
"""How long host certificates are valid from the moment they are made (a week-long class fits)."""
SKEW: Final = datetime.timedelta(minutes=5)
"""Certificates start this long before they are made, so a clock a little behind still accepts them."""


class SshKeyError(Exception):
    """A key file of the SSH folder is missing or not a key: the folder was not made by `make`."""


@dataclass(frozen=True)
class SshKeys:
    """The SSH folder of a state directory: where each key is, and each as asyncssh reads it."""

    folder: Path

    @classmethod
    def make(cls, folder: Path, now: datetime.datetime, server_name: str = SERVER_NAME) -> SshKeys:
        """Every key and certificate, new, into `folder` (made 0700 if missing); certificates are valid
        from `now` (less `SKEW`) for `VALIDITY`, for the principal `server_name`."""
        keys = cls(folder)
        own_folder(folder)
        lab_ca = _new_key("mitm-lab SSH CA")
        rogue_ca = _new_key("attacker's SSH CA")
        server = _new_key(f"host key of {server_name}")
        attacker = _new_key("attacker's host key")
        customer = _new_key("the customer's key")
        valid = (int((now - SKEW).timestamp()), int((now + VALIDITY).timestamp()))
        for path, key in (
            (keys.lab_ca, lab_ca),
            (keys.rogue_ca, rogue_ca),
            (keys.server_key, server),
            (keys.attacker_key, attacker),
            (keys.customer_key, customer),
        ):
            write_private(path, key.export_private_key("openssh"))
            write_private(_public_path(path), key.export_public_key("openssh"))
        for path, ca, host, key_id in (
            (keys.server_certificate, lab_ca, server, server_name),
            (keys.attacker_certificate, rogue_ca, attacker, f"attacker as {server_name}"),
        ):
            certificate = ca.generate_host_certificate(
                host, key_id, principals=[server_name], valid_after=valid[0], valid_before=valid[1]
            )
            write_private(path, certificate.export_certificate("openssh"))
        return keys

    @property
    def files(self) -> list[Path]:
        """Every file `make` writes."""
        keys = [self.lab_ca, self.rogue_ca, self.server_key, self.attacker_key, self.customer_key]
        certificates = [self.server_certificate, self.attacker_certificate]
        return [*keys, *map(_public_path, keys), *certificates]

    @property
    def server_key(self) -> Path:
        """The real sshd's host key (its `HostKey`)."""
        return self.folder / "server_host_ed25519"

    @property
    def server_certificate(self) -> Path:
        """The real sshd's host certificate, signed by the lab's SSH CA (its `HostCertificate`)."""
        return self.folder / "server_host_ed25519.lab-ca.cert"

    @property
    def lab_ca(self) -> Path:
        return self.folder / "lab_ssh_ca"

    @property
    def customer_key(self) -> Path:
        """The customer's private key (`ssh -i`); the server authorises its public half."""
        return self.folder / "customer_ed25519"

    @property
    def attacker_key(self) -> Path:
        """The attacker's own host key (`host-key-swap`)."""
        return self.folder / "attacker_host_ed25519"

    @property
    def attacker_certificate(self) -> Path:
        """The attacker's host key, certified for the server's name by the attacker's own CA
        (`rogue-host-ca`)."""
        return self.folder / "attacker_host_ed25519.rogue-ca.cert"

    @property
    def rogue_ca(self) -> Path:
        return self.folder / "rogue_ssh_ca"

    def private(self, path: Path) -> asyncssh.SSHKey:
        """The private key stored at `path` (one of the properties above)."""
        try:
            return asyncssh.read_private_key(path)
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SshKeyError(f"no private key at {path}: {exc}") from exc

    def public(self, path: Path) -> asyncssh.SSHKey:
        """The public half of the key stored at `path`."""
        try:
            return asyncssh.read_public_key(_public_path(path))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SshKeyError(f"no public key beside {path}: {exc}") from exc

    def certificate(self, path: Path) -> asyncssh.SSHCertificate:
        try:
            return asyncssh.read_certificate(path)
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SshKeyError(f"no certificate at {path}: {exc}") from exc

    def authorized_key(self) -> str:
        """The customer's public key as one line of an authorized_keys file."""
        return openssh_line(self.public(self.customer_key)) + "\n"


def _new_key(comment: str) -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(ALGORITHM, comment=comment)


def _public_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def openssh_line(key: asyncssh.SSHKey) -> str:
    """`algorithm base64`, the key's public half as OpenSSH writes it, without a comment."""
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{algorithm} {blob}"


def known_host_line(key: asyncssh.SSHKey, name: str = SERVER_NAME) -> str:
    """A known_hosts line pinning `key` for `name` (what accept-new writes on first contact)."""
    return f"{name} {openssh_line(key)}\n"


def cert_authority_line(ca: asyncssh.SSHKey, name: str = SERVER_NAME) -> str:
    """A known_hosts line trusting `ca` to certify host keys of `name`."""
    return f"@cert-authority {name} {openssh_line(ca)}\n"
