"""reflection: send the client's own record back to it, in place of the server's reply.

Seed 003 "为什么要生成两个会话密钥": with one key for both directions,
"中间商获取之后，直接原封不动把消息丢回来，客户端收到之后依然可以解密，就以为真是服务器发来的".
The client's first record goes on to the server as usual; the server's first reply is dropped and the
client's record takes its place. With `per_direction_keys` on it does not verify under the server's
write key and is refused.

    mitmlab server --no-per-direction-keys          # a record-layer setting: both sides must share it
    mitmdump -s addons/reflection.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-per-direction-keys balance
"""

from mitmproxy import tcp

from lab.channel.frames import Frame, FrameType
from lab.mitm.attack import FrameAttack
from lab.mitm.wire import flow_wire


class Reflection(FrameAttack):
    attack = "reflection"

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        if frame.type is not FrameType.APPLICATION:
            return [frame.encode()]
        view = flow_wire(flow).view
        if from_client and view.records[True] == 1:
            flow.metadata["lab_reflect"] = frame.encode()
        elif not from_client and view.records[False] == 1 and "lab_reflect" in flow.metadata:
            self.evidence.injected(flow, "the client's record #0 sent back to the client as the server's #0")
            return [flow.metadata.pop("lab_reflect")]
        return [frame.encode()]


addons = [Reflection()]
