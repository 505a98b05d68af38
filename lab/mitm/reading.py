"""Reading records without being an endpoint: in the clear, or offline with a stolen server key."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from lab.channel.connection import OAEP
from lab.channel.frames import Frame, FrameType
from lab.channel.keys import derive_session_keys
from lab.channel.records import HMAC_SIZE, RecordLayer
from lab.channel.suites import KeyExchange, RecordFeatures, RecordProtection, Suite
from lab.mitm.wire import SessionView


def readable_plaintext(suite: Suite, body: bytes) -> bytes | None:
    """The plaintext of a record whose suite does not encrypt; None when it does."""
    if suite.record is RecordProtection.NULL:
        return body
    if suite.record is RecordProtection.NULL_HMAC_SHA256:
        return body[:-HMAC_SIZE]
    return None


class CannotDecrypt(Exception):
    """Why a recording stays secret, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecryptedRecord:
    from_client: bool
    seq: int
    plaintext: bytes


def decrypt_recording(
    recording: list[tuple[bool, Frame]], server_key: rsa.RSAPrivateKey
) -> list[DecryptedRecord]:
    """Every application record of a recorded session, given the server's long-term private key."""
    view = SessionView(0)
    for from_client, frame in recording:
        view.observe(from_client, frame)
    suite, hello, server_hello = view.suite, view.client_hello, view.server_hello
    if suite is None or hello is None or server_hello is None:
        raise CannotDecrypt("the recording has no complete handshake")
    records = [(c, f.body) for c, f in recording if f.type is FrameType.APPLICATION]
    if not suite.record.encrypts:
        return _in_order([(c, readable_plaintext(suite, body) or b"") for c, body in records])
    if suite.key_exchange is KeyExchange.ECDHE:
        raise CannotDecrypt(
            f"the session used {suite.name}: its pre-master came from ephemeral X25519 keys that never "
            "travelled and are gone; the server's long-term key does not recover it"
        )
    try:
        pre_master = server_key.decrypt(view.client_key_exchange, OAEP)
    except ValueError:
        raise CannotDecrypt("the stolen key does not decrypt this session's pre-master") from None
    keys = derive_session_keys(
        pre_master,
        hello.random,
        server_hello.random,
        per_direction_keys=RecordFeatures.PER_DIRECTION_KEYS in hello.features,
    )
    sequence_numbers = RecordFeatures.SEQUENCE_NUMBERS in hello.features
    readers = {
        sender: RecordLayer(
            suite.record,
            write_keys=keys.server_write if sender else keys.client_write,
            read_keys=keys.client_write if sender else keys.server_write,
            sequence_numbers=sequence_numbers,
            random=bytes,
        )
        for sender in (True, False)
    }
    return [DecryptedRecord(c, *readers[c].open(body)) for c, body in records]


def _in_order(records: list[tuple[bool, bytes]]) -> list[DecryptedRecord]:
    counters = {True: 0, False: 0}
    out = []
    for from_client, plaintext in records:
        out.append(DecryptedRecord(from_client, counters[from_client], plaintext))
        counters[from_client] += 1
    return out
