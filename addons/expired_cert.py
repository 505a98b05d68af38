"""expired-cert: present the server's previous bank.lab certificate, expired, with its leaked key.

The lab CA really issued it, for the right name; it expired a year ago and its key leaked. A client
checking `validity` refuses it (seed 001 §5.2.3 b: "可以通过失效日期来验证证书是否过期").

    mitmdump -s addons/expired_cert.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by validity
    mitmlab client --connect 127.0.0.1:4434 --no-validity balance    # the attacker reads the password

On the real-TLS stack (docs/tls.md), the same certificate answers a real client's TLS:

    mitmdump -s addons/expired_cert.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/ca.crt.pem https://bank.lab:9443/
"""

from lab.mitm.relay import PresentCertificate
from lab.mitm.web import InterceptTls

addons = [
    PresentCertificate("expired-cert", certificate="expired"),
    InterceptTls("expired-cert", certificate="expired"),
]
