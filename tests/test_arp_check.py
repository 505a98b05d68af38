"""The check through ARP positioning (docs/arp.md): `mitmlab check --positioning arp`, as root, against
positioning by names; static_arp; the usage errors. A module of its own: the check makes the lab
networks of its lanes, which test_arp's module lane must not hold meanwhile."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from lab.cli.errors import EXIT_SETUP
from tests.conftest import local_check, need_root
from tests.processes import mitmlab, without_privilege

pytestmark = [pytest.mark.system, pytest.mark.root]


def arp_check(out: Path, *extra: str) -> dict[str, Any]:
    need_root()
    return local_check(out, "--positioning", "arp", "--jobs", "3", *extra)


def by_place(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (s["attack"], s["label"]): (s["verdict"], s["blocked_by"])
        for s in report["scenarios"]
        if s["view"] == "ladder" and s["attack"] in ("self-signed", "replay")
    }


def test_the_check_through_arp_gives_the_verdicts_of_names_and_times_each_detection(
    tmp_path: Path, channel_check: tuple[Path, dict[str, Any]]
) -> None:
    report = arp_check(tmp_path / "arp", "--view", "ladder", "--attack", "self-signed", "--attack", "replay")
    _, named = channel_check
    assert by_place(report) == by_place(named) and len(by_place(report)) == 22
    assert {s["positioning"] for s in report["scenarios"]} == {"arp"}
    for s in report["scenarios"]:
        found = s["detection"]
        assert found["detected"] and {"moved", "shared"} <= set(found["kinds"]), s["id"]
        assert found["ms_before_outcome"] > 0 and "detection alone does not block" in found["text"]
        said = [t["text"] for t in s["evidence"]["timeline"]]
        assert any(t.startswith("POISONS the ARP caches") for t in said)
        assert "(during) the server answers an ICMP echo with TTL 63" in said
    assert "On the path by ARP poisoning" in (tmp_path / "arp" / "report.html").read_text()


def test_static_arp_blocks_every_attack_through_arp(tmp_path: Path) -> None:
    report = arp_check(tmp_path / "static", "--view", "ladder", "--attack", "self-signed", "--static-arp")
    assert {(s["verdict"], s["blocked_by"], s["step"]) for s in report["scenarios"]} == {
        ("blocked", "static_arp", "arp")
    }
    assert all(s["detection"]["detected"] is False for s in report["scenarios"])
    assert all(s["profile"].endswith("+static_arp") for s in report["scenarios"])


def test_static_arp_alone_is_a_usage_error() -> None:
    alone = mitmlab("check", "--static-arp")
    assert alone.returncode == 2 and "add --positioning arp" in alone.stderr


def test_without_root_the_check_through_arp_says_what_it_needs() -> None:
    """Run as nobody where the tests run as root (CI): no namespace is made, no run is played. Not root
    without the capabilities: the lab asks for root by uid, and root that lacks them gets further."""
    with tempfile.TemporaryDirectory() as scratch:
        arp = ("check", "--positioning", "arp", "--attack", "replay")
        done = without_privilege("-m", "lab", *arp, cwd=Path(scratch), user="nobody")
        assert done.returncode == EXIT_SETUP, done.stderr
        assert "makes network namespaces, which needs root" in done.stderr
        assert "Traceback" not in done.stderr
        assert not list(Path(scratch).glob("reports/*/report.json"))


def test_positioning_and_defence_sets_show_both_ways_and_static_arp_in_the_matrix(
    tmp_path: Path, channel_check: tuple[Path, dict[str, Any]]
) -> None:
    need_root()
    attacks = ("--attack", "replay", "--attack", "downgrade")
    out = tmp_path / "both"
    report = local_check(out, "--view", "positioning", "--view", "defence-sets", "--jobs", "3", *attacks)
    _, named = channel_check
    by_names = {s["id"]: (s["verdict"], s["blocked_by"]) for s in named["scenarios"]}
    twins = 0
    for s in report["scenarios"]:
        if s["positioning"] == "arp" and not s["static_arp"]:
            twin = next(
                n
                for n in named["scenarios"]
                if (n["attack"], n["protections"]) == (s["attack"], s["protections"])
            )
            assert (s["verdict"], s["blocked_by"]) == by_names[twin["id"]], s["id"]
            twins += 1
    assert twins >= 4
    pairs = report["sections"]["positioning"]["attacks"]
    assert {a: [p["same"] for p in row.values()] for a, row in pairs.items()} == {
        "replay": [True, True],
        "downgrade": [True, True],
    }
    assert pairs["replay"]["none"]["arp"]["verdict"] == "compromised"
    assert report["protections"][-1] == "static_arp"
    assert {a: report["headline"][a]["static_arp"] for a in ("replay", "downgrade")} == {
        "replay": "enough_alone",
        "downgrade": "enough_alone",
    }
    for attack in ("replay", "downgrade"):
        found = report["sections"]["defence-sets"]["attacks"][attack]
        (link,) = [s for s in found["sets"] if s.get("positioning") == "arp"]
        assert link["protections"] == ["static_arp"]
        held = next(s for s in report["scenarios"] if s["id"] == link["blocks"])
        assert (held["verdict"], held["blocked_by"], held["static_arp"]) == ("blocked", "static_arp", True)
        assert "`static_arp` alone stops it too" in found["line"]
    markdown = (out / "report.md").read_text()
    assert "## positioning: by names and through ARP poisoning" in markdown
    assert "static_arp (through ARP)" in markdown and "| static_arp |" in markdown


def test_the_positioning_view_is_not_run_with_every_run_through_arp() -> None:
    done = mitmlab("check", "--view", "positioning", "--positioning", "arp")
    assert done.returncode == 2 and "runs by names and through ARP itself" in done.stderr


def test_real_clients_through_arp_meet_the_verdicts_they_meet_by_names(
    tmp_path: Path, clients_check: tuple[Path, dict[str, Any]]
) -> None:
    """The attacker redirects the HTTPS bank's ports to mitmproxy's transparent listener: a forged
    certificate (self-signed), and sslstrip on the plain-HTTP front door."""
    attacks = ("--attack", "self-signed", "--attack", "sslstrip")
    report = arp_check(tmp_path / "tls", "--view", "clients", *attacks)
    _, named = clients_check

    def cells(r: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
        return {
            (c["client"], c["attack"]): (c["verdict"], c["protection"])
            for c in r["clients"]
            if c["attack"] in ("none", "self-signed", "sslstrip")
        }

    assert cells(report) == cells(named) and len(cells(report)) > 30
    assert ("compromised", None) in cells(report).values()
    assert {s["positioning"] for s in report["scenarios"]} == {"arp"}
    assert all(s["detection"]["detected"] for s in report["scenarios"])
