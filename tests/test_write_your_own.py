"""The tutorial's example addon (docs/examples/amount_flip.py) works as the tutorial says, so the docs
cannot drift from the code; and a broken addon file is refused with a clear message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.channel.errors import ChannelError
from lab.channel.protections import RECOMMENDED
from lab.roles.attacker import AttackerError, AttackerRole
from lab.roles.client import BankRefused, Command, NoReply, ReplyUnreadable, run_session
from lab.roles.server import BankServer
from lab.state import StateDir
from tests.world import evidence_dicts

pytestmark = pytest.mark.loopback

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "amount_flip.py"


def run_example(state: StateDir, mac: bool) -> list[dict[str, object]]:
    protections = RECOMMENDED.with_switches({"mac": mac})

    async def scenario() -> None:
        server = BankServer(state, protections)
        port = await server.start("127.0.0.1", 0)
        serving = asyncio.create_task(server.serve_forever())
        attacker = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", port))
        via = await attacker.start()
        attacker.switch_to_file(EXAMPLE)
        try:
            await run_session(
                state, "127.0.0.1", via, protections, [Command("transfer", to="bob", amount=100)]
            )
        except (ChannelError, BankRefused, NoReply, ReplyUnreadable):
            pass  # with mac on, the server refuses: the evidence says so
        finally:
            await attacker.stop()
            serving.cancel()
            await server.stop()

    asyncio.run(scenario())
    return evidence_dicts(state, "server")


def test_amount_flip_moves_900_without_a_mac_and_is_refused_with_one(state: StateDir) -> None:
    executed = [e for e in run_example(state, mac=False) if e["event"] == "transfer_executed"]
    assert [e["amount"] for e in executed] == [900]
    state.reset()
    refusals = [e for e in run_example(state, mac=True) if e["event"] == "refusal"]
    assert [e["protection"] for e in refusals] == ["mac"]


def test_a_broken_addon_file_is_refused_with_its_error(state: StateDir, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module\n")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")

    async def scenario() -> None:
        attacker = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", 9))
        await attacker.start()
        try:
            with pytest.raises(AttackerError, match="no_such_module"):
                attacker.switch_to_file(broken)
            with pytest.raises(AttackerError, match=r"defines no addons"):
                attacker.switch_to_file(empty)
            with pytest.raises(AttackerError, match="lab_bitflip_to"):
                attacker.switch("bit-flip", {"lab_bitflip_to": "mallory"})
            attacker.switch("bit-flip", {"lab_bitflip_to": "ted"})  # and it still works afterwards
            attacker.switch("replay")
            attacker.switch("bit-flip")  # an option set for an earlier switch does not linger
            assert attacker.mitm.options.lab_bitflip_to == "eve"
        finally:
            await attacker.stop()

    asyncio.run(scenario())
