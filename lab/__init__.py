"""mitm-lab: a man-in-the-middle attack lab.

`lab.channel` is the lab's own secure channel (sans-IO) with every protection a switch; `lab.pki` makes
and checks its certificates; `lab.bank` is the application an attack wants to read or change;
`lab.roles` runs the server and client over asyncio; `addons/` holds the attacks, as mitmproxy addons.
"""

__version__ = "0.1.0"
