"""session-replay: record the client's whole flight, then play it into a fresh connection to the server.

If the keys depend only on what the client sent (no fresh server random, RSA key transport), the
recorded ClientHello, key exchange, Finished and records are as good in a new connection as in the old
one, and the transfer executes again. A fresh `server_random` (or ECDHE's fresh share) gives the new
session other keys, and the server refuses the replayed Finished (seed 001 §5.2.2, seed 003 Server Hello).

    mitmlab server --no-server-random               # the server's random: a server setting
    mitmdump -s addons/session_replay.py --mode reverse:tcp://127.0.0.1:4433@4434 --set lab_state_dir=state
    mitmlab client --connect 127.0.0.1:4434 --no-forward-secrecy transfer 100 bob
"""

import asyncio

from mitmproxy import tcp
from mitmproxy.utils import asyncio_utils

from lab import events
from lab.channel.errors import RemoteProtocolError
from lab.channel.frames import Frame, FrameBuffer, FrameType
from lab.channel.messages import Alert
from lab.mitm.attack import FrameAttack

REPLY_TIMEOUT = 5.0


class SessionReplay(FrameAttack):
    attack = "session-replay"

    def __init__(self) -> None:
        super().__init__()
        self.pending: set[asyncio.Task[None]] = set()
        """Replays under way (asyncio keeps only weak references to tasks)."""

    def on_frame(self, flow: tcp.TCPFlow, from_client: bool, frame: Frame) -> list[bytes]:
        if from_client:
            flow.metadata.setdefault("lab_flight", []).append(frame.encode())
        return [frame.encode()]

    def on_end(self, flow: tcp.TCPFlow) -> None:
        flight: list[bytes] = flow.metadata.get("lab_flight", [])
        address = flow.server_conn.address
        if flight and address:
            task = asyncio_utils.create_task(self.replay(flow, flight, address), name="session-replay")
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def replay(self, flow: tcp.TCPFlow, flight: list[bytes], address: tuple[str, int]) -> None:
        host, port = address
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), REPLY_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.evidence.failed(flow, f"cannot reach the server again: {exc}")
            return
        writer.write(b"".join(flight))
        writer.write_eof()
        self.evidence.injected(
            flow, "the client's recorded flight, into a new connection", frames=len(flight)
        )
        answers, alerts, buffer = [], [], FrameBuffer()
        try:
            while data := await asyncio.wait_for(reader.read(65536), REPLY_TIMEOUT):
                answers += buffer.feed(data)
            alerts = [Alert.decode(f.body) for f in answers if f.type is FrameType.ALERT]
        except (OSError, TimeoutError, RemoteProtocolError):
            pass  # what came back so far is what the evidence says
        finally:
            writer.close()
        records = sum(f.type is FrameType.APPLICATION for f in answers)
        if alerts:
            alert = alerts[0]
            self.evidence.failed(flow, f"the server refused the replay: {alert.message}", step=alert.step)
        self.evidence.record(flow, events.ReplayDone(server_records=records))


addons = [SessionReplay()]
