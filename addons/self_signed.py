"""self-signed: present a self-signed certificate for bank.lab, relay both ways, read everything.

The certificate names the right host and is in date; only no CA vouches for it. A client checking
`ca_trust` refuses it at `server_certificate` (seed 001 §4.2.5: "使用第三方机构来解决").

    mitmdump -s addons/self_signed.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by ca_trust
    mitmlab client --connect 127.0.0.1:4434 --no-ca-trust balance    # the attacker reads the password

On the real-TLS stack (docs/tls.md), the same certificate answers a real client's TLS:

    mitmdump -s addons/self_signed.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/ca.crt.pem https://bank.lab:9443/
"""

from lab.mitm.relay import PresentCertificate
from lab.mitm.web import InterceptTls

addons = [
    PresentCertificate("self-signed", certificate="self-signed"),
    InterceptTls("self-signed", certificate="self-signed"),
]
