"""The check through ARP positioning (docs/arp.md): `mitmlab check --positioning arp`, as root, against
positioning by names; static_arp; the usage errors. A module of its own: the check makes the lab
networks of its lanes, which test_arp's module lane must not hold meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import local_check, need_root
from tests.processes import mitmlab


def arp_check(out: Path, *extra: str) -> dict[str, Any]:
    need_root()
    return local_check(out, "--positioning", "arp", "--view", "ladder", "--jobs", "3", *extra)


def by_place(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (s["attack"], s["label"]): (s["verdict"], s["blocked_by"])
        for s in report["scenarios"]
        if s["view"] == "ladder" and s["attack"] in ("self-signed", "replay")
    }


def test_the_check_through_arp_gives_the_verdicts_of_names_and_times_each_detection(
    tmp_path: Path, channel_check: tuple[Path, dict[str, Any]]
) -> None:
    report = arp_check(tmp_path / "arp", "--attack", "self-signed", "--attack", "replay")
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
    report = arp_check(tmp_path / "static", "--attack", "self-signed", "--static-arp")
    assert {(s["verdict"], s["blocked_by"], s["step"]) for s in report["scenarios"]} == {
        ("blocked", "static_arp", "arp")
    }
    assert all(s["detection"]["detected"] is False for s in report["scenarios"])
    assert all(s["profile"].endswith("+static_arp") for s in report["scenarios"])


def test_arp_positioning_is_refused_where_it_cannot_run() -> None:
    alone = mitmlab("check", "--static-arp")
    assert alone.returncode == 2 and "add --positioning arp" in alone.stderr
    compose = mitmlab("check", "--positioning", "arp", "--backend", "compose")
    assert compose.returncode == 2 and "runs on the local backend" in compose.stderr
