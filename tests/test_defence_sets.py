"""The defence-sets search against every subset, and scenarios whose two sides differ.

The pruned search assumes monotonicity to skip most of the lattice; running every subset above the
floor shows it finds the same minimal sets, on the attack whose lattice has the most to get wrong:
reflection, stopped only by a pair, and by either of two pairs that share a protection (encryption and
per-direction keys, or a MAC and per-direction keys).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from lab.channel.protections import NONE, RECOMMENDED
from lab.checker.backends.local import LocalBackend
from lab.checker.check import CheckResult
from lab.checker.runner import Runner, ground_truth
from lab.checker.views import Placement, ViewOutcome
from lab.report.model import build
from lab.report.writers import write_report
from lab.stacks.scenario import Scenario
from lab.state import StateDir
from tests.processes import mitmlab

pytestmark = pytest.mark.system

ATTACKS = ("reflection",)


def defence_sets(out: Path, *extra: str) -> dict[str, Any]:
    args = [a for attack in ATTACKS for a in ("--attack", attack)]
    result = mitmlab(
        # what the search finds, not what was on the wire: no capture (a tenth of the time, as root)
        "check",
        "--view",
        "defence-sets",
        *args,
        *extra,
        "--no-capture",
        "--jobs",
        "3",
        "--out",
        str(out),
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def test_the_pruned_search_finds_the_sets_that_every_subset_shows(tmp_path: Path) -> None:
    pruned = defence_sets(tmp_path / "pruned")
    every = defence_sets(tmp_path / "every", "--exhaustive")
    assert every["sections"]["defence-sets"]["search"] == "exhaustive"
    for attack in ATTACKS:
        searched = pruned["sections"]["defence-sets"]["attacks"][attack]
        complete = every["sections"]["defence-sets"]["attacks"][attack]
        assert complete["runs"] == 2 ** (11 - len(complete["floor"]["protections"]))  # every subset ran
        assert searched["runs"] < complete["runs"] / 20  # and the search needed a small part of them
        assert (searched["floor"], searched["sets"], searched["line"]) == (
            complete["floor"],
            complete["sets"],
            complete["line"],
        )
        assert complete["findings"] == []  # over the whole lattice, no protection opened the attack
    sets = [s["protections"] for s in every["sections"]["defence-sets"]["attacks"]["reflection"]["sets"]]
    assert sets == [["encryption", "per_direction_keys"], ["mac", "per_direction_keys"]]
    assert pruned["headline"] == every["headline"]


def test_an_asymmetric_scenario_shows_both_sides_and_the_outcome(state: StateDir, tmp_path: Path) -> None:
    """The server offers forward secrecy, the client does not: RSA it is, and the recording opens."""
    client, server = RECOMMENDED.without("forward_secrecy"), RECOMMENDED
    lopsided = Scenario("key-compromise", client, server)

    async def scenario() -> CheckResult:
        backend = LocalBackend(state, tmp_path / "lanes")
        lanes = await backend.start(1)
        runner = Runner(backend, lanes, ground_truth(state), tmp_path / "out")
        try:
            await runner.run(lopsided)
            await runner.run(Scenario.symmetric("key-compromise", RECOMMENDED))
        finally:
            await backend.stop()
        now = datetime.datetime.now(datetime.UTC)
        result = CheckResult(("sides",), ("key-compromise",), "local", now, now)
        placements = [Placement("sides", "key-compromise", "client without fs", lopsided)]
        result.outcomes = {"sides": ViewOutcome(placements)}  # a view of the test's own: no template
        result.results = runner.results
        return result

    result = asyncio.run(scenario())
    assert result.results[lopsided.id].verdict.verdict == "compromised"
    assert [b.kind for b in result.results[lopsided.id].verdict.breakages] == ["recording_decrypted"]
    report = build(result)
    write_report(report, tmp_path / "out")
    [entry] = report["scenarios"]
    assert entry["protections"]["client"]["forward_secrecy"] is False
    assert entry["protections"]["server"]["forward_secrecy"] is True
    assert entry["profile"] == "client recommended -forward_secrecy; server recommended"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "client recommended -forward_secrecy; server recommended" in html and "compromised" in html


def test_demo_sets_the_server_apart(state: StateDir) -> None:
    result = mitmlab("demo", "key-compromise", "--server-without", "forward_secrecy", timeout=120)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())  # as one line, however the terminal wrapped it
    assert "client recommended; server recommended -forward_secrecy" in said
    assert "COMPROMISED" in said  # the server offers RSA only: the client's ECDHE goes unused


def test_a_scenario_runs_on_a_stack_its_attack_applies_to() -> None:
    assert Scenario.symmetric("replay", RECOMMENDED).stack == "lab-channel"
    with pytest.raises(ValueError, match="unknown stack 'tls'"):
        Scenario("replay", RECOMMENDED, RECOMMENDED, stack="tls")
    assert Scenario.symmetric("replay", RECOMMENDED).id != Scenario("replay", RECOMMENDED, NONE).id
