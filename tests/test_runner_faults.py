"""The runner when the lab itself fails: a role killed in the middle of a run, a scenario that does not
finish in time. Each is an `error` with its reason (never `blocked`), what was recorded stays, the lane
is restarted, and the scenarios after it run normally."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from lab.channel.protections import RECOMMENDED
from lab.checker.backends.local import LocalBackend
from lab.checker.check import run_check
from lab.checker.runner import Runner, RunResult, ground_truth
from lab.stacks.scenario import Scenario
from lab.state import StateDir

pytestmark = pytest.mark.loopback


def test_a_killed_role_and_a_timeout_are_errors_and_the_rest_goes_on(state: StateDir, tmp_path: Path) -> None:
    async def scenario() -> list[tuple[str, str | None]]:
        backend = LocalBackend(state, tmp_path / "lanes")
        lanes = await backend.start(1)
        runner = Runner(backend, lanes, ground_truth(state), tmp_path / "out")
        verdicts = []
        try:
            first = await runner.run(Scenario.symmetric("eavesdrop", RECOMMENDED))
            verdicts.append((first.verdict.verdict, first.verdict.blocked_by))
            os.kill(backend.pid(lanes[0], "attacker"), signal.SIGKILL)  # the attacker dies between runs
            killed = await runner.run(Scenario.symmetric("replay", RECOMMENDED))
            verdicts.append((killed.verdict.verdict, killed.verdict.error))
            runner.timeout = 0.001  # less than one control round trip
            late = await runner.run(Scenario.symmetric("bit-flip", RECOMMENDED))
            verdicts.append((late.verdict.verdict, late.verdict.error))
            runner.timeout = 30
            after = await runner.run(Scenario.symmetric("bit-flip", RECOMMENDED.without("mac")))
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


HAND_WRITTEN_ADDON = '''
"""eavesdrop, as a careless third-party addon: it writes its evidence line by hand, with a misspelt field."""

import json

from mitmproxy import tcp

from lab.mitm.attack import FrameAttack
from lab.mitm.evidence import state_dir


class Careless(FrameAttack):
    attack = "eavesdrop"

    def on_end(self, flow: tcp.TCPFlow) -> None:
        line = {"event": "read", "ts": "2026-12-01T00:00:00+00:00", "role": "attacker", "attack": "eavesdrop",
                "secret": "password", "valeu": "guessed", "where": "nowhere", "how": "in_the_clear"}
        with state_dir().evidence_path("attacker").open("a") as evidence:
            evidence.write(json.dumps(line) + "\\n")


addons = [Careless()]
'''


def test_an_evidence_line_that_does_not_validate_makes_the_run_an_error_not_a_verdict(
    state: StateDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addons = tmp_path / "addons"
    addons.mkdir()
    (addons / "eavesdrop.py").write_text(HAND_WRITTEN_ADDON)
    monkeypatch.setenv("MITMLAB_ADDONS", str(addons))  # the role processes load the attack from here

    async def scenario() -> RunResult:
        backend = LocalBackend(state, tmp_path / "lanes")
        lanes = await backend.start(1)
        try:
            return await Runner(backend, lanes, ground_truth(state), tmp_path / "out").run(
                Scenario.symmetric("eavesdrop", RECOMMENDED)
            )
        finally:
            await backend.stop()

    result = asyncio.run(scenario())
    assert result.verdict.verdict == "error", result.verdict
    assert "evidence does not validate" in (result.verdict.error or "")
    assert "valeu" in (result.verdict.error or "")  # the reason names the field
    kept = (tmp_path / "out" / result.evidence_dir / "attacker.jsonl").read_text()
    assert '"valeu": "guessed"' in kept  # the bad line is in the report as it was written
    assert "session_opened" in (tmp_path / "out" / result.evidence_dir / "client.jsonl").read_text()


def test_the_progress_total_is_the_runs_asked_for_and_ends_on_the_runs_that_ran(
    state: StateDir, tmp_path: Path
) -> None:
    """The views overlap (ablation's baseline is defence-sets' recommended, ...) and a search asks as
    it goes: the total told never overshoots, only grows, and ends where the runs do."""
    told: list[int] = []
    done: list[str] = []
    backend = LocalBackend(state, tmp_path / "lanes")
    result = asyncio.run(
        run_check(
            backend,
            state,
            ("ladder", "ablation", "defence-sets"),
            ("replay",),
            2,
            tmp_path / "out",
            lambda run: done.append(run.scenario.id),
            on_planned=told.append,
        )
    )
    assert told == sorted(told) and len(set(told)) == len(told)
    assert told[-1] == len(result.results) == len(done) == len(set(done))
    placed = sum(len(outcome.placements) for outcome in result.outcomes.values())
    assert len(result.results) < placed  # the overlap the old estimate counted twice
