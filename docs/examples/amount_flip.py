"""amount-flip: turn a transfer of 1xx into 9xx by XOR on the ciphertext (a student's own attack).

Like bit-flip, but on the amount: the attacker knows the transfer's layout and the recipient, so it
knows where the amount's first digit sits, and guesses that digit is a 1. `mac` should stop it.

    mitmdump -s docs/examples/amount_flip.py --mode reverse:tcp://127.0.0.1:4433@4434
    mitmlab attacker --addon docs/examples/amount_flip.py
    mitmlab client --connect 127.0.0.1:4434 --no-mac transfer 100 bob    # the bank moves 900
"""

from mitmproxy import ctx, tcp
from mitmproxy.addonmanager import Loader

from lab.bank.protocol import TRANSFER_TO_OFFSET
from lab.channel.frames import Frame, FrameType
from lab.channel.records import nonce_size
from lab.mitm.attack import FrameAttack
from lab.mitm.wire import flow_wire


class AmountFlip(FrameAttack):
    attack = "amount-flip"

    def load(self, loader: Loader) -> None:
        super().load(loader)
        loader.add_option("lab_amountflip_to", str, "bob", "The recipient the attacker expects.")

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        view = flow_wire(flow).view
        is_transfer = from_client and frame.type is FrameType.APPLICATION and view.records[True] == 2
        if not is_transfer or view.suite is None:
            return [frame.encode()]
        # {"op":"transfer","to":"bob","amount":100}
        #                         ^ TRANSFER_TO_OFFSET     ^ the first digit
        digit = nonce_size(view.suite.record) + TRANSFER_TO_OFFSET + len(ctx.options.lab_amountflip_to) + 11
        body = bytearray(frame.body)
        body[digit] ^= ord("1") ^ ord("9")
        self.evidence.changed(flow, "transfer amount's first digit", before="1", after="9")
        return [Frame(frame.type, bytes(body)).encode()]


addons = [AmountFlip()]
