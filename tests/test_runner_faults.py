"""The runner when the lab itself fails: a role killed in the middle of a run, a scenario that does not
finish in time. Each is an `error` with its reason (never `blocked`), what was recorded stays, the lane
is restarted, and the scenarios after it run normally."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from lab.channel.protections import RECOMMENDED
from lab.checker.backends.local import LocalBackend
from lab.checker.runner import Runner, ground_truth
from lab.checker.scenarios import Scenario
from lab.state import StateDir


def test_a_killed_role_and_a_timeout_are_errors_and_the_rest_goes_on(state: StateDir, tmp_path: Path) -> None:
    async def scenario() -> list[tuple[str, str | None]]:
        backend = LocalBackend(state, tmp_path / "lanes")
        lanes = await backend.start(1)
        runner = Runner(backend, lanes, ground_truth(state), tmp_path / "out")
        verdicts = []
        try:
            first = await runner.run(Scenario("eavesdrop", RECOMMENDED))
            verdicts.append((first.verdict.verdict, first.verdict.blocked_by))
            os.kill(backend.pid(lanes[0], "attacker"), signal.SIGKILL)  # the attacker dies between runs
            killed = await runner.run(Scenario("replay", RECOMMENDED))
            verdicts.append((killed.verdict.verdict, killed.verdict.error))
            runner.timeout = 0.001  # less than one control round trip
            late = await runner.run(Scenario("bit-flip", RECOMMENDED))
            verdicts.append((late.verdict.verdict, late.verdict.error))
            runner.timeout = 30
            after = await runner.run(Scenario("bit-flip", RECOMMENDED.without("mac")))
            verdicts.append((after.verdict.verdict, after.verdict.breakages[0].kind))
        finally:
            await backend.stop()
        return verdicts

    first, killed, late, after = asyncio.run(scenario())
    assert first == ("blocked", "encryption")
    assert killed[0] == "error" and "attacker" in (killed[1] or "")
    assert late[0] == "error" and "did not finish within" in (late[1] or "")
    assert after == ("compromised", "transfer_altered")
    assert (tmp_path / "out" / "evidence").is_dir()
    assert len(list((tmp_path / "out" / "evidence").iterdir())) == 4  # every run's evidence was kept
