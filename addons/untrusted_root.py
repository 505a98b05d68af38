"""untrusted-root: intercept the bank's TLS the way a naive mitmproxy does, with a certificate for
bank.lab made on the fly by mitmproxy's own CA, which no client trusts.

What every client must refuse (`ca_trust`): curl exits 60, Python says "unable to get local issuer
certificate", Chromium `ERR_CERT_AUTHORITY_INVALID` (docs/tls.md).

    mitmdump -s addons/untrusted_root.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/ca.crt.pem https://bank.lab:9443/
"""

from lab.mitm.web import InterceptTls

addons = [InterceptTls("untrusted-root", certificate=None)]
