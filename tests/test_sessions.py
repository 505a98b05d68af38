"""The bank over the lab channel on real loopback sockets: sessions, and a server that survives abuse.

A misbehaving connection (garbage, oversized frame, truncated handshake, a stall, a client that dies
mid-session) gets a typed error in the evidence, that connection is closed, the server keeps serving
others, and the ledger keeps what it already recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lab.bank.ledger import Ledger
from lab.channel.errors import PeerRefused
from lab.channel.frames import HEADER, MAX_BODY, FrameType
from lab.channel.protections import NONE, RECOMMENDED, Protections
from lab.roles.client import BankRefused, Command, run_session
from lab.roles.transport import Timeouts
from lab.state import StateDir
from tests.loopback import raw_exchange, running_server
from tests.world import evidence_dicts

pytestmark = pytest.mark.loopback

SESSION = [Command("transfer", to="bob", amount=100), Command("balance")]


def events(state: StateDir, role: str, name: str) -> list[dict[str, Any]]:
    return [e for e in evidence_dicts(state, role) if e["event"] == name]


@pytest.mark.parametrize("protections", [RECOMMENDED, NONE], ids=["recommended", "none"])
def test_log_in_transfer_and_read_the_balance(state: StateDir, protections: Protections) -> None:
    async def scenario() -> None:
        async with running_server(state, protections) as port:
            result = await run_session(state, "127.0.0.1", port, protections, SESSION)
        assert [r["ok"] for r in result.replies] == [True, True, True]
        assert result.replies[-1]["balance"] == 900

    asyncio.run(scenario())
    ledger = Ledger(state.ledger_path)
    [transfer] = ledger.transfers()
    assert (transfer.from_account, transfer.to_account, transfer.amount) == ("alice", "bob", 100)
    assert ledger.balance("bob") == 1100
    [executed] = events(state, "server", "transfer_executed")
    assert executed["session"] == transfer.session and executed["seq"] == transfer.record_seq == 1
    sent = {e["plaintext"] for e in events(state, "server", "record_sent")}
    received = {e["plaintext"] for e in events(state, "client", "record_received")}
    assert sent == received and len(sent) == 3


def test_the_client_sees_the_servers_refusal_and_the_server_records_it(state: StateDir) -> None:
    """A client without transcript MACs meets a server that requires them: the server refuses at
    `finished`, and its alert tells the client why."""

    async def scenario() -> None:
        async with running_server(state, RECOMMENDED) as port:
            with pytest.raises(PeerRefused) as caught:
                await run_session(state, "127.0.0.1", port, RECOMMENDED.without("transcript"), SESSION)
        assert caught.value.protection == "transcript" and caught.value.step == "finished"

    asyncio.run(scenario())
    [refusal] = events(state, "server", "refusal")
    assert refusal["protection"] == "transcript" and refusal["error"] == "HandshakeTampered"


def test_the_bank_declines_a_wrong_password(state: StateDir) -> None:
    async def scenario() -> None:
        async with running_server(state) as port:
            with pytest.raises(BankRefused, match="wrong user name or password"):
                await run_session(state, "127.0.0.1", port, RECOMMENDED, [], password="guess")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("abuse", "error"),
    [
        (b"GET / HTTP/1.1\r\nHost: bank.lab\r\n\r\n", "RemoteProtocolError"),
        (HEADER.pack(FrameType.HANDSHAKE, MAX_BODY + 1), "FrameTooLarge"),
        (HEADER.pack(FrameType.HANDSHAKE, 40) + b"\x01" + b"r" * 10, "ConnectionClosedEarly"),
        (HEADER.pack(FrameType.APPLICATION, 4) + b"data", "UnexpectedMessage"),
        (HEADER.pack(FrameType.HANDSHAKE, 3) + b"\x01ab", "RemoteProtocolError"),
    ],
    ids=["garbage", "oversized", "truncated-handshake", "out-of-order", "malformed-hello"],
)
def test_bad_input_closes_that_connection_and_the_server_keeps_serving(
    state: StateDir, abuse: bytes, error: str
) -> None:
    async def scenario() -> bytes:
        async with running_server(state) as port:
            await run_session(state, "127.0.0.1", port, RECOMMENDED, SESSION[:1])
            answer = await raw_exchange(port, abuse)
            await run_session(state, "127.0.0.1", port, RECOMMENDED, SESSION)
        return answer

    answer = asyncio.run(scenario())
    if error != "ConnectionClosedEarly":
        assert answer[0] == FrameType.ALERT  # the server said why before closing
    [logged] = events(state, "server", "protocol_error")
    assert logged["error"] == error
    assert len(Ledger(state.ledger_path).transfers()) == 2  # before and after the abuse
    assert not events(state, "server", "internal_error")


def test_a_stalled_peer_is_cut_off_while_others_are_served(state: StateDir) -> None:
    async def scenario() -> None:
        async with running_server(state, timeouts=Timeouts(handshake=0.5, idle=5)) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEADER.pack(FrameType.HANDSHAKE, 10)[:2])  # half a header, then silence
            await run_session(state, "127.0.0.1", port, RECOMMENDED, SESSION)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        assert answer[0] == FrameType.ALERT

    asyncio.run(scenario())
    [stall] = events(state, "server", "protocol_error")
    assert stall["error"] == "PeerStalled" and stall["step"] == "handshake"
    assert len(events(state, "server", "transfer_executed")) == 1


def test_a_client_that_dies_mid_session_loses_nothing_already_recorded(state: StateDir) -> None:
    async def scenario() -> None:
        async with running_server(state) as port:
            run = asyncio.create_task(
                run_session(
                    state, "127.0.0.1", port, RECOMMENDED, [Command("transfer", to="bob", amount=5)] * 50
                )
            )
            while len(events(state, "server", "transfer_executed")) < 3:
                await asyncio.sleep(0.01)
            run.cancel()  # the client vanishes mid-conversation
            await asyncio.gather(run, return_exceptions=True)
            await run_session(state, "127.0.0.1", port, RECOMMENDED, SESSION)

    asyncio.run(scenario())
    ledger = Ledger(state.ledger_path)
    executed = events(state, "server", "transfer_executed")
    assert len(ledger.transfers()) == len(executed) >= 4
    assert ledger.balance("alice") + ledger.balance("bob") == 2000
    assert not events(state, "server", "internal_error")
