"""`mitmlab check` end to end: every view, every attack, real roles as processes, twice.

The expectations of the brief live here (the product only measures): which protection each attack
needs, where on the ladder each attack is first stopped, and that two runs agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from lab.channel.protections import PROTECTION_IDS
from lab.clients.browser import CHROMIUM_FLAGS
from lab.report.writers import FILES
from lab.stacks import attacks_on
from lab.stacks.scenario import LAB_CHANNEL
from tests.conftest import CHANNEL_VIEWS
from tests.processes import mitmlab
from tests.world import verdicts_unchanged_since_before_stacks

pytestmark = pytest.mark.system

CHANNEL_ATTACKS = attacks_on(LAB_CHANNEL)

# The brief's table: the protection that should stop each attack, and the step it acts at.
BRIEF = {
    "eavesdrop": ("encryption", "record"),
    "pubkey-swap": ("ca_trust", "server_certificate"),
    "self-signed": ("ca_trust", "server_certificate"),
    "wrong-host": ("hostname", "server_certificate"),
    "expired-cert": ("validity", "server_certificate"),
    "bit-flip": ("mac", "record"),
    "replay": ("sequence_numbers", "record"),
    "session-replay": ("server_random", "finished"),
    "reflection": ("per_direction_keys", "record"),
    "downgrade": ("transcript", "finished"),
    "key-compromise": ("forward_secrecy", "client_key_exchange"),
}

# What the ablation measures: the protections without which `recommended` lets the attack through.
# Beyond the brief's table, some follow from how the protections depend on each other:
# - replay / mac: without a MAC nothing binds the counter to a record, so sequence numbers refuse nothing;
# - key-compromise / encryption: an unencrypted recording needs no stolen key;
# - session-replay: a fresh server random and a fresh ECDHE share each stop it on their own, so
#   neither is needed while the other is on (defence in depth).
NEEDED = {
    "eavesdrop": {"encryption"},
    "pubkey-swap": {"ca_trust"},
    "self-signed": {"ca_trust"},
    "wrong-host": {"hostname"},
    "expired-cert": {"validity"},
    "bit-flip": {"mac"},
    "replay": {"mac", "sequence_numbers"},
    "session-replay": set(),
    # Without a MAC the reflected record is still read under the server's write key: garbage, not the
    # client's own message. Only per_direction_keys stands alone in its way.
    "reflection": {"per_direction_keys"},
    "downgrade": {"transcript"},
    "key-compromise": {"encryption", "forward_secrecy"},
}
# What it takes to stop each attack from its floor (the weakest profile in which it succeeds: `none`,
# except downgrade, which needs something stronger than the legacy suite to strip; with `mac` the
# client offers an HMAC suite, the first protection in id order that gives it one). Each set, with why:
FLOORS: dict[str, list[str]] = {attack: [] for attack in BRIEF} | {"downgrade": ["mac"]}
DEFENCE_SETS = {
    "eavesdrop": [{"encryption"}],  # only ciphertext hides the secrets from the capture
    # A CA check and a pin each refuse the forged certificate on their own; the pin needs a clean
    # first session, which the scenario makes:
    "pubkey-swap": [{"ca_trust"}, {"pinning"}],  # the swapped key breaks the CA's signature
    "self-signed": [{"ca_trust"}, {"pinning"}],  # signed by no one the client trusts
    "wrong-host": [{"hostname"}, {"pinning"}],  # CA-signed, but for attacker.lab
    "expired-cert": [{"validity"}, {"pinning"}],  # CA-signed for bank.lab, but expired (its key leaked)
    "bit-flip": [{"mac"}],  # flipped bits fail the MAC, encrypted or not
    # A MAC alone verifies an exact copy; a counter alone is bound to nothing: only both refuse it.
    "replay": [{"mac", "sequence_numbers"}],
    "session-replay": [{"server_random"}, {"forward_secrecy"}],  # each gives the new session fresh keys
    # The client's own record comes back. With two keys, a MAC refuses it, or without a MAC encryption
    # turns it into garbage under the server's key; with one key, or in plaintext without a MAC, the
    # client accepts its own message.
    "reflection": [{"encryption", "per_direction_keys"}, {"mac", "per_direction_keys"}],
    "downgrade": [{"transcript"}],  # the Finished MACs cover the ClientHello as the client sent it
    # A plaintext recording needs no key; an RSA one opens with the stolen key: both, together.
    "key-compromise": [{"encryption", "forward_secrecy"}],
}


def expected_cell(attack: str, protection: str) -> str:
    sets = DEFENCE_SETS[attack]
    if protection in NEEDED[attack]:
        return "needed"
    if {protection} in sets:
        return "enough_alone"
    if any(protection in s for s in sets):
        return "part_of_a_set"
    return "no_effect"


# On the ladder each attack is first stopped at the level that adds its protection.
FIRST_STOPPED_AT = {
    "eavesdrop": "encryption",
    "pubkey-swap": "ca_trust",
    "self-signed": "ca_trust",
    "wrong-host": "hostname",
    "expired-cert": "validity",
    "bit-flip": "mac",
    "replay": "sequence_numbers",
    "session-replay": "server_random",
    "reflection": "per_direction_keys",
    "downgrade": "transcript",
    "key-compromise": "forward_secrecy",
}


def run_check(out: Path) -> dict[str, Any]:
    result = mitmlab("check", *CHANNEL_VIEWS, "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


@pytest.fixture(scope="module")
def runs(
    channel_check: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The session's check of the lab channel's views, and a second run of the same, to compare."""
    first, report = channel_check
    return first, report, run_check(tmp_path_factory.mktemp("check-2"))


def placed(report: dict[str, Any], view: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["attack"], s["label"]): s for s in report["scenarios"] if s["view"] == view}


def test_all_four_reports_and_the_raw_evidence(runs: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    out, report, _ = runs
    for name in FILES:
        assert (out / name).stat().st_size > 0
    assert report["schema"] == "mitm-lab/report" and report["version"] == 5
    assert report["views"] == ["ladder", "ablation", "defence-sets"]
    assert report["summary"]["error"] == 0
    for scenario in report["scenarios"]:
        assert {
            "view",
            "attack",
            "protections",
            "verdict",
            "blocked_by",
            "step",
            "evidence",
            "duration_ms",
        } <= set(scenario)
        assert set(scenario["protections"]) == {"client", "server"}
        assert all((out / f).exists() for f in scenario["evidence"]["files"])


def test_the_headline_holds_the_briefs_expectations(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, report, _ = runs
    headline = report["headline"]
    assert set(headline) == set(CHANNEL_ATTACKS)
    for attack, (protection, _) in BRIEF.items():
        assert headline[attack][protection] in ("needed", "enough_alone"), (attack, protection)
    measured = {a: {p: headline[a][p] for p in PROTECTION_IDS} for a in CHANNEL_ATTACKS}
    expected = {a: {p: expected_cell(a, p) for p in PROTECTION_IDS} for a in CHANNEL_ATTACKS}
    assert measured == expected


def test_recommended_blocks_every_attack_with_the_protection_the_brief_names(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, report, _ = runs
    ablation = placed(report, "ablation")
    for attack, (protection, step) in BRIEF.items():
        baseline = ablation[(attack, "baseline")]
        assert baseline["verdict"] == "blocked", attack
        assert baseline["blocked_by"] == protection, (attack, baseline["blocked_by"])
        assert baseline["step"] == step, attack


def test_the_ladder_tells_the_story(runs: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    _, report, _ = runs
    ladder = placed(report, "ladder")
    levels = [level["level"] for level in report["sections"]["ladder"]["levels"]]
    for attack in CHANNEL_ATTACKS:
        verdicts = [ladder[(attack, level)]["verdict"] for level in levels]
        stopped = [level for level, v in zip(levels, verdicts, strict=True) if v == "blocked"]
        assert stopped and stopped[0] == FIRST_STOPPED_AT[attack], (attack, verdicts)
        below = verdicts[: levels.index(FIRST_STOPPED_AT[attack])]
        expected = {"compromised", "unaffected"} if attack == "downgrade" else {"compromised"}
        assert set(below) <= expected, (attack, verdicts)  # nothing stops it before its level
    # Downgrade has nothing to strip until the client offers something stronger than the legacy suite.
    assert ladder[("downgrade", "plaintext")]["verdict"] == "unaffected"


def test_defence_sets_are_the_minimal_sets_with_the_runs_that_show_it(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, report, _ = runs
    verdict = {s["id"]: s["verdict"] for s in report["scenarios"]}
    section = report["sections"]["defence-sets"]
    assert section["search"] == "pruned"
    for attack, expected in DEFENCE_SETS.items():
        found = section["attacks"][attack]
        assert found["floor"]["protections"] == FLOORS[attack], attack
        assert verdict[found["floor"]["run"]] == "compromised"
        assert [set(s["protections"]) for s in found["sets"]] == expected, attack
        for minimal in found["sets"]:
            assert verdict[minimal["blocks"]] in ("blocked", "unaffected")
            assert set(minimal["without_one"]) == set(minimal["protections"])
            assert all(verdict[run] == "compromised" for run in minimal["without_one"].values())
        assert found["findings"] == [], attack  # no protection was seen to open an attack
    assert section["attacks"]["replay"]["line"] == "stopped only by `mac` and `sequence_numbers` together"
    assert section["attacks"]["self-signed"]["line"] == "stopped by `ca_trust`, or by `pinning`"
    pinned = [s for s in report["scenarios"] if s["pin_first"]]
    assert pinned and all(s["evidence"]["pin_session"] for s in pinned)  # the clean session came first


def test_two_consecutive_runs_give_identical_verdicts(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, first, second = runs

    def verdicts(report: dict[str, Any]) -> dict[tuple[str, str, str], tuple[str, str | None, str | None]]:
        return {
            (s["view"], s["attack"], s["label"]): (s["verdict"], s["blocked_by"], s["step"])
            for s in report["scenarios"]
        }

    assert verdicts(first) == verdicts(second)
    assert first["headline"] == second["headline"]


def test_the_stacks_as_plug_ins_judge_every_run_as_before(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, report, _ = runs
    assert verdicts_unchanged_since_before_stacks(report) >= 300


def test_junit_has_one_case_per_scenario_and_compromised_ones_fail(
    runs: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    out, report, _ = runs
    cases = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert len(cases) == len(report["scenarios"])
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == sum(s["verdict"] == "compromised" for s in report["scenarios"])


def test_report_show_prints_the_summary_again(runs: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    out, report, _ = runs
    result = mitmlab("report", "show", str(out))
    assert result.returncode == 0
    assert f"{report['summary']['runs']} runs" in result.stdout and "eavesdrop" in result.stdout


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, (
        "headless Chromium is needed: apt-get install chromium (./run-tests does it when run as root)"
    )
    return subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_html_report_renders_in_chromium(runs: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    """Opened from file:// with no network: the matrix renders, and a run's timeline opens from its link."""
    out, report, _ = runs
    page = (out / "report.html").as_uri()
    dom = chromium("--dump-dom", page).stdout
    matrix = dom[dom.index('<table id="matrix">') : dom.index("</table>", dom.index('<table id="matrix">'))]
    assert matrix.count("<tr>") == 1 + len(CHANNEL_ATTACKS)
    assert matrix.count('class="needed"') == sum(len(v) for v in NEEDED.values())
    assert (
        "http://" not in dom.split("<body>")[0] and "https://" not in dom.split("<body>")[0]
    )  # nothing fetched

    flipped = next(s for s in report["scenarios"] if s["attack"] == "bit-flip" and s["label"] == "mac")
    focused = chromium("--dump-dom", f"{page}?only={flipped['id']}").stdout
    assert f'<details class="run" id="run-{flipped["id"]}" open="">' in focused
    assert "CHANGES the transfer recipient: bob -&gt; eve" in focused
    assert "EXECUTES transfer #1: alice -&gt; eve 100" in focused

    ARTIFACTS.mkdir(exist_ok=True)
    for name, url in (("report-matrix.png", page), ("report-run.png", f"{page}?only={flipped['id']}")):
        shot = ARTIFACTS / name
        shot.unlink(missing_ok=True)
        chromium("--window-size=1300,1500", f"--screenshot={shot}", url)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
