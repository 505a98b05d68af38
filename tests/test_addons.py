"""The addons as mitmproxy tests its own: the same files, loaded by mitmproxy's script loader into a
`taddons` context, hooks called on test flows. Bad input must never crash mitmproxy or stall a flow:
bytes that are not the lab channel pass through untouched (or, for the relay, the flow is closed), and
the evidence says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mitmproxy import exceptions, tcp
from mitmproxy.addons.script import load_script
from mitmproxy.test import taddons, tflow

from lab.attacks import ATTACK_IDS, attack
from lab.channel.connection import ClientConfig, ClientConnection
from lab.channel.frames import Frame, FrameType
from lab.channel.messages import ClientHello
from lab.channel.protections import RECOMMENDED
from lab.stacks import attacks_on
from lab.stacks.scenario import LAB_CHANNEL
from lab.state import SERVER_NAME, StateDir
from tests.world import evidence_dicts

CHANNEL_ATTACKS = attacks_on(LAB_CHANNEL)
RELAYS = {"pubkey-swap", "self-signed", "wrong-host", "expired-cert"}
GARBAGE = [
    b"GET / HTTP/1.1\r\nHost: bank.lab\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\xff" * 70,
]


@pytest.fixture
def loaded(request: pytest.FixtureRequest, state: StateDir) -> Iterator[tuple[Any, taddons.context]]:
    with taddons.context() as tctx:
        module = load_script(str(attack(request.param).addon))  # what the attacker role does, too
        assert module is not None
        tctx.master.addons.add(module)
        [addon] = [a for a in module.addons if hasattr(a, "tcp_message")]  # the lab channel's
        tctx.configure(addon, lab_state_dir=str(state.root))
        yield addon, tctx


def message(flow: tcp.TCPFlow, from_client: bool, content: bytes) -> bytes:
    flow.messages.append(tcp.TCPMessage(from_client, content))
    return content


@pytest.mark.parametrize("loaded", CHANNEL_ATTACKS, indirect=True)
@pytest.mark.parametrize("garbage", GARBAGE, ids=["http", "tls", "ff"])
def test_bytes_that_are_not_the_lab_channel_never_break_an_addon(
    loaded: tuple[Any, taddons.context], garbage: bytes, state: StateDir
) -> None:
    addon, _ = loaded
    flow = tflow.ttcpflow(messages=[])
    if hasattr(addon, "tcp_start"):
        addon.tcp_start(flow)
    for from_client in (True, False, True):
        original = message(flow, from_client, garbage)
        addon.tcp_message(flow)
        if addon.attack not in RELAYS:
            assert flow.messages[-1].content == original  # passed through, byte for byte
    addon.tcp_end(flow)
    events = evidence_dicts(state, "attacker")
    assert not [e for e in events if e["event"] == "addon_error"], events
    if addon.attack in RELAYS:
        assert flow.error is not None and not flow.live  # the relay closed the flow cleanly
    assert any(e["event"] == "attack_failed" for e in events)


@pytest.mark.parametrize("loaded", CHANNEL_ATTACKS, indirect=True)
def test_a_client_that_closes_before_saying_anything(
    loaded: tuple[Any, taddons.context], state: StateDir
) -> None:
    addon, _ = loaded
    flow = tflow.ttcpflow(messages=[])
    if hasattr(addon, "tcp_start"):
        addon.tcp_start(flow)
    message(flow, True, b"\x16\x00")  # half a frame header, then the client is gone
    addon.tcp_message(flow)
    addon.tcp_end(flow)
    events = evidence_dicts(state, "attacker")
    assert not [e for e in events if e["event"] == "addon_error"], events


@pytest.mark.parametrize("loaded", ["bit-flip"], indirect=True)
def test_bit_flip_refuses_recipients_of_different_lengths(loaded: tuple[Any, taddons.context]) -> None:
    addon, tctx = loaded
    with pytest.raises(exceptions.OptionsError, match="same length"):
        tctx.configure(addon, lab_bitflip_to="mallory")


@pytest.mark.parametrize("loaded", ["downgrade"], indirect=True)
def test_downgrade_strips_the_client_hello_and_never_a_record_that_starts_like_one(
    loaded: tuple[Any, taddons.context], state: StateDir
) -> None:
    """A record's body is a random nonce and ciphertext: one in 256 starts with the ClientHello's
    type byte, and must pass as it came (seen once in CI as a 41-byte record in a ladder check)."""
    addon, _ = loaded
    client = ClientConnection(ClientConfig(RECOMMENDED, SERVER_NAME, state.trust()))
    client.start()
    hello = client.data_to_send()
    flow = tflow.ttcpflow(messages=[])
    message(flow, True, hello)
    addon.tcp_message(flow)
    assert flow.messages[-1].content != hello  # the legacy suites alone
    record = Frame(FrameType.APPLICATION, bytes([ClientHello.msg_type]) + bytes(40)).encode()
    message(flow, True, record)
    addon.tcp_message(flow)
    assert flow.messages[-1].content == record


def test_every_attack_of_the_brief_has_its_addon_file() -> None:
    assert set(ATTACK_IDS) == {
        "eavesdrop",
        "pubkey-swap",
        "self-signed",
        "wrong-host",
        "expired-cert",
        "bit-flip",
        "replay",
        "session-replay",
        "reflection",
        "downgrade",
        "key-compromise",
        "untrusted-root",
        "rogue-ca",
        "revoked",
        "sslstrip",
        "host-key-swap",
        "rogue-host-ca",
    }
    for attack_id in ATTACK_IDS:
        source = attack(attack_id).addon.read_text()
        assert (
            source.startswith('"""') and "mitmdump -s addons/" in source
        )  # says what it does and how to run it
        assert len(source.splitlines()) <= 80, f"{attack_id} is more than one screen"
