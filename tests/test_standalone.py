"""Each addon on its own under `mitmdump -s addons/<attack>.py`, in front of a real `mitmlab server`,
with a client dialling mitmdump: the addon acts and writes its evidence, exactly as inside the lab."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from lab.attacks import attack
from lab.channel.errors import ChannelError
from lab.channel.protections import RECOMMENDED, Protections
from lab.checker.runner import ground_truth
from lab.roles.client import BankRefused, NoReply, ReplyUnreadable, run_session
from lab.stacks import attacks_on
from lab.stacks.lab_channel import decide
from lab.stacks.scenario import LAB_CHANNEL
from lab.state import StateDir
from lab.verdict import RunEvidence
from tests.processes import background, mitmdump
from tests.world import SESSION, evidence_dicts, read_evidence

pytestmark = pytest.mark.loopback

WEAK: dict[str, Protections] = {
    "eavesdrop": RECOMMENDED.without("encryption"),
    "pubkey-swap": RECOMMENDED.without("ca_trust"),
    "self-signed": RECOMMENDED.without("ca_trust"),
    "wrong-host": RECOMMENDED.without("hostname"),
    "expired-cert": RECOMMENDED.without("validity"),
    "bit-flip": RECOMMENDED.without("mac"),
    "replay": RECOMMENDED.without("sequence_numbers"),
    "session-replay": RECOMMENDED.without("server_random", "forward_secrecy"),
    "reflection": RECOMMENDED.without("per_direction_keys"),
    "downgrade": RECOMMENDED.without("transcript"),
    "key-compromise": RECOMMENDED.without("forward_secrecy"),
}
ACTED = {"read", "changed", "injected"}
LAST_WORD = {"session-replay": "replay_done", "eavesdrop": "captured"}
"""The event an addon writes once it is done: eavesdrop's capture comes at the connection's end,
and the checker judges it from that capture alone."""


def switches(protections: Protections) -> list[str]:
    return [
        f"--no-{p.replace('_', '-')}" for p, on in protections.as_dict().items() if not on and p != "pinning"
    ]


@pytest.mark.parametrize("attack_id", attacks_on(LAB_CHANNEL))
def test_each_addon_runs_standalone_under_mitmdump(state: StateDir, tmp_path: Path, attack_id: str) -> None:
    protections = WEAK[attack_id]
    with (
        background(
            "server",
            "--listen",
            "127.0.0.1:0",
            "--web-ports",
            "0,0",
            "--state-dir",
            str(state.root),
            *switches(protections),
            port_file=tmp_path / "port",
        ) as server_port,
        mitmdump(
            attack(attack_id).addon, state, tmp_path / "mitmproxy", f"reverse:tcp://127.0.0.1:{server_port}"
        ) as [port],
    ):
        # Reflection, for one, leaves the client holding a message it cannot use: that is the attack.
        with contextlib.suppress(ChannelError, BankRefused, NoReply, ReplyUnreadable, OSError):
            asyncio.run(run_session(state, "127.0.0.1", port, protections, list(SESSION)))
        asyncio.run(_wait_for_evidence(state, attack_id))
    # Judged by the checker's own rules on what the three roles recorded: the attack worked.
    run = RunEvidence(
        {role: read_evidence(state.evidence_path(role), role) for role in ("client", "server", "attacker")}
    )
    verdict = decide(run, ground_truth(state))
    assert verdict.verdict == "compromised", (attack_id, verdict)


async def _wait_for_evidence(state: StateDir, attack_id: str, timeout: float = 15) -> None:
    """Until the addon reports having acted, and having finished where it says so (`LAST_WORD`)."""
    last = LAST_WORD.get(attack_id)
    async with asyncio.timeout(timeout):
        while True:
            events = evidence_dicts(state, "attacker")
            acted = any(e["event"] in ACTED and e["attack"] == attack_id for e in events)
            if acted and (last is None or any(e["event"] == last for e in events)):
                return
            await asyncio.sleep(0.05)
