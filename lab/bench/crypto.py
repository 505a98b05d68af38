"""`mitmlab bench crypto`: seed 003's table (混合加密), measured on this machine.

The seed encrypts and decrypts a short message 1000 times with AES-128-CBC, RSA-1024 and RSA-2048 and
reports the time and RSA's cost relative to AES (143x and 868x there): asymmetric encryption is far
too slow for bulk data, hence a hybrid scheme. From Python, 1000 operations on 13 bytes mostly measure
the per-call overhead, which flatters RSA; so a bulk row encrypts 16 MiB with AES-128-CBC in one call,
and the throughput ratio compares RSA with what AES really does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MESSAGE = b"hello openssl"
"""A short message: the seed's throughput (13.11 MB/s in 0.97 ms for 1000 round trips) implies ~13 bytes."""
ROUNDS = 1000
BULK = 16 * 2**20
SEED_MS = {"aes_128_cbc": 0.97, "rsa_1024": 138.59, "rsa_2048": 840.35}
"""Seed 003's times for 1000 enc/dec round trips."""
STEPS = 4


@dataclass(frozen=True)
class Row:
    name: str
    ms: float
    """Time for ROUNDS round trips of MESSAGE (or one round trip of BULK bytes for the bulk row)."""
    bytes_per_second: float


def _aes(message: bytes) -> Callable[[], None]:
    algorithm, iv = algorithms.AES(os.urandom(16)), os.urandom(16)

    def round_trip() -> None:
        padder = sym_padding.PKCS7(128).padder()
        padded = padder.update(message) + padder.finalize()
        encryptor = Cipher(algorithm, modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        decryptor = Cipher(algorithm, modes.CBC(iv)).decryptor()
        decryptor.update(ciphertext) + decryptor.finalize()

    return round_trip


def _rsa(bits: int) -> Callable[[], None]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public, pkcs1 = key.public_key(), padding.PKCS1v15()  # textbook RSA encryption, as in the seed

    def round_trip() -> None:
        key.decrypt(public.encrypt(MESSAGE, pkcs1), pkcs1)

    return round_trip


def _time(round_trip: Callable[[], None], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        round_trip()
    return time.perf_counter() - start


def run(tick: Callable[[], None]) -> list[Row]:
    rows = []
    for name, round_trip in (
        ("aes_128_cbc", _aes(MESSAGE)),
        ("rsa_1024", _rsa(1024)),
        ("rsa_2048", _rsa(2048)),
    ):
        seconds = _time(round_trip, ROUNDS)
        rows.append(Row(name, seconds * 1000, ROUNDS * len(MESSAGE) / seconds))
        tick()
    seconds = _time(_aes(bytes(BULK)), 1)
    rows.append(Row("aes_128_cbc bulk", seconds * 1000, BULK / seconds))
    tick()
    return rows
