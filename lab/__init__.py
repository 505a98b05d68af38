"""mitm-lab: a man-in-the-middle attack lab.

`lab.channel` is the lab's own secure channel (sans-IO) with every protection a switch, its client's
identity checks included; `lab.pki` makes and reads certificates; `lab.bank` is the application an attack
wants to read or change; `lab.roles` runs the server and client over asyncio; `addons/` holds the
attacks, as mitmproxy addons.
"""

__version__ = "0.1.0"
