"""expired-cert: present the server's previous bank.lab certificate, expired, with its leaked key.

The lab CA really issued it, for the right name; it expired a year ago and its key leaked. A client
checking `validity` refuses it (seed 001 §5.2.3 b: "可以通过失效日期来验证证书是否过期").

    mitmdump -s addons/expired_cert.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 balance                  # refused by validity
    mitmlab client --connect 127.0.0.1:4434 --no-validity balance    # the attacker reads the password
"""

from lab.mitm.relay import PresentCertificate

addons = [PresentCertificate("expired-cert", certificate="expired")]
