"""wrong-host: present a genuine certificate from the lab's own CA, issued to attacker.lab.

The attacker bought a certificate too (seed 001 §4.2.6: "如果不法分子也拿到证书"). It chains to the
trusted CA and is in date; only its name is wrong. A client checking `hostname` refuses it.

    mitmdump -s addons/wrong_host.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by hostname
    mitmlab client --connect 127.0.0.1:4434 --no-hostname balance    # the attacker reads the password

On the real-TLS stack (docs/tls.md), the same certificate answers a real client's TLS:

    mitmdump -s addons/wrong_host.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/ca.crt.pem https://bank.lab:9443/
"""

from lab.mitm.relay import PresentCertificate
from lab.mitm.web import InterceptTls

addons = [
    PresentCertificate("wrong-host", certificate="attacker.lab"),
    InterceptTls("wrong-host", certificate="attacker.lab"),
]
