"""key-compromise: record a session; later, with the server's stolen private key, decrypt it offline.

With RSA key transport the pre-master travels encrypted under the server's long-term key, so whoever
steals that key later decrypts every recording. With ECDHE (`forward_secrecy`) the pre-master never
travels, and the stolen key is useless (seed 003 "TLS使用ECDHE算法握手过程": 前向保密).

The recording is written to <lab_state_dir>/attacker/recordings/; the key is read from the state
directory, as a thief with a copy of the server's disk would.

    mitmdump -s addons/key_compromise.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-forward-secrecy balance   # decrypted after the fact
"""

import json

from mitmproxy import tcp

from lab import events
from lab.channel.connection import key_fingerprint
from lab.channel.frames import Frame, FrameBuffer, FrameType
from lab.events import ReadHow
from lab.mitm.attack import FrameAttack
from lab.mitm.evidence import secrets_in, state_dir
from lab.mitm.reading import CannotDecrypt, decrypt_recording
from lab.mitm.wire import flow_wire


class KeyCompromise(FrameAttack):
    attack = "key-compromise"

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        flow.metadata.setdefault("lab_recording", []).append((from_client, frame))
        return [frame.encode()]

    def on_end(self, flow: tcp.TCPFlow) -> None:
        recording: list[tuple[bool, Frame]] = flow.metadata.get("lab_recording", [])
        if not recording:
            return
        state = state_dir()
        path = state.root / "attacker" / "recordings" / f"flow-{flow_wire(flow).view.number}.jsonl"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(
            "".join(json.dumps({"from_client": c, "frame": f.encode().hex()}) + "\n" for c, f in recording)
        )
        self.evidence.record(flow, events.Recorded(path=str(path), frames=len(recording)))
        self.evidence.captured(flow, [(c, f.body) for c, f in recording if f.type is FrameType.APPLICATION])

        stolen_key = state.server_leaf().private_key  # later: the thief copies the server's key file
        replayed = [
            (row["from_client"], FrameBuffer().feed(bytes.fromhex(row["frame"]))[0])
            for row in map(json.loads, path.read_text().splitlines())
        ]
        key = key_fingerprint(stolen_key.public_key())
        try:
            records = decrypt_recording(replayed, stolen_key)
        except CannotDecrypt as why:
            self.evidence.record(flow, events.DecryptedOffline(key=key, records=0, failure=why.reason))
            return
        self.evidence.record(flow, events.DecryptedOffline(key=key, records=len(records)))
        suite = flow_wire(flow).view.suite
        how: ReadHow = "decrypted_offline" if suite and suite.record.encrypts else "in_the_clear"
        for record in records:
            where = f"recorded {'client' if record.from_client else 'server'} record #{record.seq}"
            for secret, value in secrets_in(record.plaintext):
                self.evidence.read(flow, secret, value, where, how=how)


addons = [KeyCompromise()]
