"""The record layer: protects application data with the negotiated suite and the session keys.

Body of an application frame, by record protection (seq is the implicit per-direction counter; it is
part of the authenticated data only when `sequence_numbers` is on; it never travels on the wire):

    AES128_GCM              nonce(12) | AES-GCM(key, nonce, plaintext, aad = [seq] | type)
    AES128_CTR_HMAC_SHA256  nonce(16) | ciphertext | HMAC(mac_key, [seq] | type | nonce | ciphertext)
    AES128_CTR              nonce(16) | ciphertext                      (malleable: no MAC)
    NULL_HMAC_SHA256        plaintext | HMAC(mac_key, [seq] | type | plaintext)
    NULL                    plaintext

When a record fails its MAC the layer says why, by comparing it with the records it has seen: one of
this side's own records sent back to it was caught by `per_direction_keys` (or, when both directions
share a key, by `sequence_numbers`); a record already received was replayed (`sequence_numbers` caught
it); anything else was altered (`mac` caught it).
"""

from __future__ import annotations

import hmac
import struct
from collections import deque
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lab.channel.errors import (
    LocalProtocolError,
    RecordOutOfSequence,
    RecordReflected,
    RecordTampered,
    RemoteProtocolError,
)
from lab.channel.frames import MAX_RECORD_PLAINTEXT, FrameType
from lab.channel.keys import DirectionKeys
from lab.channel.suites import RecordProtection

GCM_NONCE_SIZE = 12
CTR_NONCE_SIZE = 16
TAG_SIZE = 16
HMAC_SIZE = 32
DIAGNOSIS_WINDOW = 64
"""How many recent records per direction are remembered to say why a record failed."""

_TYPE = bytes([FrameType.APPLICATION])


class _Direction:
    """Seals or opens the records of one direction under one set of keys."""

    def __init__(self, protection: RecordProtection, keys: DirectionKeys) -> None:
        self.protection = protection
        self.keys = keys
        self._gcm = AESGCM(keys.enc_key)
        self._aes = algorithms.AES(keys.enc_key)

    def seal(self, aad: bytes, nonce: bytes, plaintext: bytes) -> bytes:
        match self.protection:
            case RecordProtection.AES128_GCM:
                return nonce + self._gcm.encrypt(nonce, plaintext, aad)
            case RecordProtection.AES128_CTR_HMAC_SHA256:
                ciphertext = nonce + self._ctr(nonce, plaintext)
                return ciphertext + self._hmac(aad, ciphertext)
            case RecordProtection.AES128_CTR:
                return nonce + self._ctr(nonce, plaintext)
            case RecordProtection.NULL_HMAC_SHA256:
                return plaintext + self._hmac(aad, plaintext)
            case RecordProtection.NULL:
                return plaintext

    def open(self, aad: bytes, body: bytes) -> bytes | None:
        """The plaintext, or None when the record does not verify under these keys and this aad."""
        match self.protection:
            case RecordProtection.AES128_GCM:
                try:
                    return self._gcm.decrypt(body[:GCM_NONCE_SIZE], body[GCM_NONCE_SIZE:], aad)
                except InvalidTag:
                    return None
            case RecordProtection.AES128_CTR_HMAC_SHA256:
                ciphertext, tag = body[:-HMAC_SIZE], body[-HMAC_SIZE:]
                if not hmac.compare_digest(tag, self._hmac(aad, ciphertext)):
                    return None
                return self._ctr(ciphertext[:CTR_NONCE_SIZE], ciphertext[CTR_NONCE_SIZE:])
            case RecordProtection.AES128_CTR:
                return self._ctr(body[:CTR_NONCE_SIZE], body[CTR_NONCE_SIZE:])
            case RecordProtection.NULL_HMAC_SHA256:
                plaintext, tag = body[:-HMAC_SIZE], body[-HMAC_SIZE:]
                return plaintext if hmac.compare_digest(tag, self._hmac(aad, plaintext)) else None
            case RecordProtection.NULL:
                return body

    def _ctr(self, nonce: bytes, data: bytes) -> bytes:
        cipher = Cipher(self._aes, modes.CTR(nonce))
        encryptor = cipher.encryptor()
        return encryptor.update(data) + encryptor.finalize()

    def _hmac(self, aad: bytes, data: bytes) -> bytes:
        return hmac.digest(self.keys.mac_key, aad + data, "sha256")


MIN_BODY_SIZE = {
    RecordProtection.AES128_GCM: GCM_NONCE_SIZE + TAG_SIZE,
    RecordProtection.AES128_CTR_HMAC_SHA256: CTR_NONCE_SIZE + HMAC_SIZE,
    RecordProtection.AES128_CTR: CTR_NONCE_SIZE,
    RecordProtection.NULL_HMAC_SHA256: HMAC_SIZE,
    RecordProtection.NULL: 0,
}
"""The shortest body each record protection can produce (an empty plaintext)."""


def nonce_size(protection: RecordProtection) -> int:
    if protection is RecordProtection.AES128_GCM:
        return GCM_NONCE_SIZE
    return CTR_NONCE_SIZE if protection.encrypts else 0


class RecordLayer:
    """Both directions of one endpoint's records, with the implicit counters."""

    def __init__(
        self,
        protection: RecordProtection,
        *,
        write_keys: DirectionKeys,
        read_keys: DirectionKeys,
        sequence_numbers: bool,
        random: Callable[[int], bytes],
    ) -> None:
        self.protection = protection
        self.sequence_numbers = sequence_numbers
        self._writer = _Direction(protection, write_keys)
        self._reader = _Direction(protection, read_keys)
        self._random = random
        self.write_seq = 0
        self.read_seq = 0
        self._sent = _RecentRecords()
        self._received = _RecentRecords()

    def _aad(self, seq: int) -> bytes:
        return (struct.pack("!Q", seq) if self.sequence_numbers else b"") + _TYPE

    def seal(self, plaintext: bytes) -> tuple[int, bytes]:
        """(the record's sequence number, the frame body)."""
        if len(plaintext) > MAX_RECORD_PLAINTEXT:
            raise LocalProtocolError(f"record plaintext over {MAX_RECORD_PLAINTEXT} bytes: split it")
        seq = self.write_seq
        body = self._writer.seal(self._aad(seq), self._random(nonce_size(self.protection)), plaintext)
        self.write_seq += 1
        self._sent.add(body, seq)
        return seq, body

    def open(self, body: bytes) -> tuple[int, bytes]:
        """(the record's sequence number, the plaintext). Raises the refusal that explains a failure."""
        if len(body) < MIN_BODY_SIZE[self.protection]:
            raise RemoteProtocolError(
                f"record of {len(body)} bytes is shorter than {self.protection.name} allows", step="record"
            )
        seq = self.read_seq
        plaintext = self._reader.open(self._aad(seq), body)
        if plaintext is None:
            raise self._diagnose(body)
        if len(plaintext) > MAX_RECORD_PLAINTEXT:
            raise RemoteProtocolError(
                f"record plaintext of {len(plaintext)} bytes, over {MAX_RECORD_PLAINTEXT}", step="record"
            )
        self.read_seq += 1
        self._received.add(body, seq)
        return seq, plaintext

    def _diagnose(self, body: bytes) -> RecordTampered | RecordOutOfSequence | RecordReflected:
        """Why an authenticated record failed: a remembered record that still verifies under its own
        counter (and key) was replayed or reflected; anything else was altered."""
        seq = self._sent.get(body)
        if seq is not None and self._writer.open(self._aad(seq), body) is not None:
            if self._writer.keys != self._reader.keys:
                return RecordReflected(
                    f"the record is our own record #{seq}, sent back to us: it does not verify under the "
                    "peer's write key",
                    step="record",
                )
            return RecordOutOfSequence(
                f"the record is our own record #{seq}, sent back to us; expected the peer's #{self.read_seq}",
                step="record",
            )
        seq = self._received.get(body)
        if seq is not None and self._reader.open(self._aad(seq), body) is not None:
            return RecordOutOfSequence(
                f"the record is a replay of record #{seq}; expected record #{self.read_seq}", step="record"
            )
        return RecordTampered(
            f"record #{self.read_seq} fails its {self.protection.name} authentication: altered on the way",
            step="record",
        )


class _RecentRecords:
    """The last few records of one direction, to explain a failed record.

    A record is remembered by its first 16 and last 32 bytes (its nonce and its tag, in every
    authenticated layout): no hashing on the hot path. A match is only a candidate; `_diagnose` confirms
    it by verifying the record under the remembered counter.
    """

    def __init__(self) -> None:
        self._seq_by_id: dict[bytes, int] = {}
        self._order: deque[bytes] = deque()

    @staticmethod
    def _id(body: bytes) -> bytes:
        return body[:16] + body[-32:]

    def add(self, body: bytes, seq: int) -> None:
        record_id = self._id(body)
        self._seq_by_id[record_id] = seq
        self._order.append(record_id)
        if len(self._order) > DIAGNOSIS_WINDOW:
            self._seq_by_id.pop(self._order.popleft(), None)

    def get(self, body: bytes) -> int | None:
        return self._seq_by_id.get(self._id(body))
