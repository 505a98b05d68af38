"""self-signed: present a self-signed certificate for bank.lab, relay both ways, read everything.

The certificate names the right host and is in date; only no CA vouches for it. A client checking
`ca_trust` refuses it at `server_certificate` (seed 001 §4.2.5: "使用第三方机构来解决").

    mitmdump -s addons/self_signed.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by ca_trust
    mitmlab client --connect 127.0.0.1:4434 --no-ca-trust balance    # the attacker reads the password
"""

from lab.mitm.relay import PresentCertificate

addons = [PresentCertificate("self-signed", certificate="self-signed")]
