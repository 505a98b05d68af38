"""The key schedule: from the pre-master secret and the two randoms to the session keys (HKDF-SHA256).

    master            = HKDF-Extract(salt = client_random || server_random, ikm = pre_master)
    client_write_key  = HKDF-Expand(master, "mitm-lab client write key")   16 bytes, AES-128
    client_mac_key    = HKDF-Expand(master, "mitm-lab client mac key")     32 bytes, HMAC-SHA256
    server_write_key / server_mac_key: the same with "server"
    without per_direction_keys: one "shared" key and MAC key serve both directions
    client/server finished keys: HKDF-Expand(master, "mitm-lab client|server finished")

The server random is zeros when the server's `server_random` protection is off, so it then adds nothing
fresh: the seeds' "client.random + server.random + pre-master" (seed 001 §5.2.3 g, seed 003).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

ENC_KEY_SIZE = 16
MAC_KEY_SIZE = 32
FINISHED_KEY_SIZE = 32


@dataclass(frozen=True)
class DirectionKeys:
    """The keys that protect the records one side writes."""

    enc_key: bytes
    mac_key: bytes


@dataclass(frozen=True)
class SessionKeys:
    client_write: DirectionKeys
    server_write: DirectionKeys
    client_finished: bytes
    server_finished: bytes


def expand(master: bytes, label: str, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, b"mitm-lab " + label.encode()).derive(master)


def master_secret(pre_master: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return hmac.new(client_random + server_random, pre_master, hashlib.sha256).digest()


def derive_session_keys(
    pre_master: bytes, client_random: bytes, server_random: bytes, *, per_direction_keys: bool
) -> SessionKeys:
    master = master_secret(pre_master, client_random, server_random)

    def direction(name: str) -> DirectionKeys:
        return DirectionKeys(
            expand(master, f"{name} write key", ENC_KEY_SIZE), expand(master, f"{name} mac key", MAC_KEY_SIZE)
        )

    if per_direction_keys:
        client_write, server_write = direction("client"), direction("server")
    else:
        client_write = server_write = direction("shared")
    return SessionKeys(
        client_write=client_write,
        server_write=server_write,
        client_finished=expand(master, "client finished", FINISHED_KEY_SIZE),
        server_finished=expand(master, "server finished", FINISHED_KEY_SIZE),
    )


def key_confirmation(finished_key: bytes) -> bytes:
    """Proof that the sender derived the same keys; it covers nothing else."""
    return hmac.new(finished_key, b"key confirmation", hashlib.sha256).digest()


def transcript_mac(finished_key: bytes, transcript_hash: bytes) -> bytes:
    """Proof that the sender saw the same handshake messages, byte for byte."""
    return hmac.new(finished_key, b"transcript" + transcript_hash, hashlib.sha256).digest()
