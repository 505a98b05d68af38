"""eavesdrop: read the traffic passively and report every secret in it.

The first step of the story (seed 001 §4.1, seed 003 机密性): plaintext can be read by anyone on the
path. Nothing is changed: the attacker keeps a capture of every record (the checker searches it for
the real secrets) and notes what it could read. With `encryption` on, the records are ciphertext.

    mitmdump -s addons/eavesdrop.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --profile none balance   # the password appears in the evidence

On the real-TLS stack it reads plain HTTP (a password typed into an http:// form, a cookie without
`Secure`) and lets TLS pass untouched.
"""

from mitmproxy import tcp

from lab.channel.frames import Frame, FrameType
from lab.mitm.attack import FrameAttack
from lab.mitm.evidence import secrets_in
from lab.mitm.reading import readable_plaintext
from lab.mitm.web import PassTlsThrough
from lab.mitm.wire import flow_wire


class Eavesdrop(FrameAttack):
    attack = "eavesdrop"

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        view = flow_wire(flow).view
        if frame.type is FrameType.APPLICATION:
            flow.metadata.setdefault("lab_capture", []).append((from_client, frame.body))
            plaintext = readable_plaintext(view.suite, frame.body) if view.suite else None
            for secret, value in secrets_in(plaintext or b""):
                sender = "client" if from_client else "server"
                where = f"{sender} record #{view.records[from_client] - 1}, in the clear"
                self.evidence.read(flow, secret, value, where, how="in_the_clear")
        return [frame.encode()]

    def on_end(self, flow: tcp.TCPFlow) -> None:
        self.evidence.captured(flow, flow.metadata.get("lab_capture", []))


addons = [Eavesdrop(), PassTlsThrough("eavesdrop")]
