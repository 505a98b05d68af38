"""revoked: intercept the bank's TLS with the bank's previous certificate, still in date, whose key
leaked; the lab CA has revoked it, and its CRL (state/pki/ca.crl.pem, served at
http://bank.lab/ca.crl) says so.

Right name, trusted CA, in date: only a client that checks revocation refuses it (`revocation`), with
curl's `--crlfile` or Python's `VERIFY_CRL_CHECK_LEAF`.

    mitmdump -s addons/revoked.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9443:127.0.0.1 --cacert state/pki/ca.crt.pem \\
        --crlfile state/pki/ca.crl.pem https://bank.lab:9443/
"""

from lab.mitm.web import InterceptTls

addons = [InterceptTls("revoked", certificate="revoked")]
