"""rogue-ca: intercept the bank's TLS with a bank.lab certificate from the attacker's own CA, which a
careless user installed (as corporate proxies ask their users to).

It names the right host, is in date and chains to a root: to that user's client it is as good as the
real one, unless the client pins the bank's key (`pinning`). Every other client refuses it (`ca_trust`).

    mitmdump -s addons/rogue_ca.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/attacker/rogue-ca.crt.pem https://bank.lab:9443/
"""

from lab.mitm.web import InterceptTls

addons = [InterceptTls("rogue-ca", certificate="rogue-bank.lab")]
