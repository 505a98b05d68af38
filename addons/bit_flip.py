"""bit-flip: change a transfer's recipient by XOR on the ciphertext, knowing the format but not the key.

AES-CTR encrypts by XOR with a keystream, so flipping ciphertext bit i flips plaintext bit i. The bank's
transfer layout is public (`lab.bank.protocol`): the recipient starts at TRANSFER_TO_OFFSET. XOR with
"bob" ^ "eve" turns "bob" into "eve" (seed 002 §一.2 完整性: 数据篡改). With `mac` on the record fails
its MAC and is refused.

    mitmdump -s addons/bit_flip.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-mac transfer 100 bob     # the bank pays eve
"""

from mitmproxy import ctx, exceptions, tcp
from mitmproxy.addonmanager import Loader

from lab.bank.protocol import TRANSFER_TO_OFFSET
from lab.channel.frames import Frame, FrameType
from lab.channel.records import nonce_size
from lab.mitm.attack import FrameAttack
from lab.mitm.wire import flow_wire


class BitFlip(FrameAttack):
    attack = "bit-flip"

    def load(self, loader: Loader) -> None:
        super().load(loader)
        loader.add_option(
            "lab_bitflip_record", int, 1, "Which client record to flip (0: login, 1: transfer)."
        )
        loader.add_option(
            "lab_bitflip_from", str, "bob", "The recipient the attacker expects in the plaintext."
        )
        loader.add_option("lab_bitflip_to", str, "eve", "The recipient it wants instead (same length).")

    def configure(self, updated: set[str]) -> None:
        if len(ctx.options.lab_bitflip_from) != len(ctx.options.lab_bitflip_to):
            raise exceptions.OptionsError("lab_bitflip_from and lab_bitflip_to must have the same length")

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        view = flow_wire(flow).view
        if not (from_client and frame.type is FrameType.APPLICATION):
            return [frame.encode()]
        if view.records[True] - 1 != ctx.options.lab_bitflip_record or view.suite is None:
            return [frame.encode()]
        old, new = ctx.options.lab_bitflip_from.encode(), ctx.options.lab_bitflip_to.encode()
        at = nonce_size(view.suite.record) + TRANSFER_TO_OFFSET
        body = bytearray(frame.body)
        if len(body) < at + len(old):
            self.evidence.failed(flow, "the record is too short to be a transfer")
            return [frame.encode()]
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            body[at + i] ^= a ^ b
        self.evidence.changed(flow, "transfer recipient", before=old.decode(), after=new.decode())
        return [Frame(frame.type, bytes(body)).encode()]


addons = [BitFlip()]
