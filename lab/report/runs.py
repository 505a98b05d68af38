"""The report's list of every run: each run's line in words, and the groups a reader filters the list
by (view, attack, client, verdict) with how many runs each holds. Read from report.json alone, so that a
report of any version of the lab, and any verdict it holds, lists the same way."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

FILTERS: Final = ("view", "attack", "client", "verdict")
"""What the run list filters by, each a `data-` attribute of a run (a view's: every view it is placed in)."""
LAB_CLIENT: Final = "lab client"
"""The client of a run that names none (`victim`): the lab's own (a real-TLS run's is its real client)."""
NO_ATTACK: Final = "no attack"


def groups_of(run: dict[str, Any]) -> dict[str, list[str]]:
    """The groups a run belongs to, by filter."""
    return {
        "view": list(dict.fromkeys(run["views"])),
        "attack": [run["attack"] or NO_ATTACK],
        "client": [run.get("victim") or LAB_CLIENT],
        "verdict": [run["verdict"]],
    }


def group_counts(runs: list[dict[str, Any]], first: dict[str, list[str]]) -> dict[str, list[tuple[str, int]]]:
    """Each filter's groups with their runs: the values in `first` in its order, then any other the runs
    hold (a verdict this lab does not know yet is still a group)."""
    counts = {name: Counter(value for run in runs for value in run["groups"][name]) for name in FILTERS}
    return {
        name: [(value, counts[name][value]) for value in dict.fromkeys([*first.get(name, []), *counts[name]])]
        for name in FILTERS
        if counts[name]
    }


def said(run: dict[str, Any]) -> str:
    """The run in a line a student reads: what attacked what, the verdict and why, such as "replay
    against recommended -sequence_numbers: compromised: 100 to bob executed 2 times, sent 1"."""
    attack = run["attack"] or NO_ATTACK
    target = run["profile"]
    if run.get("victim"):
        target = f"{target} (a real client)"
    where = " through ARP" if run["positioning"] == "arp" else ""
    why = _why(run)
    verdict = str(run["verdict"]).replace("-", " ")
    return f"{attack} against {target}{where}: {verdict}{': ' + why if why else ''}"


def _why(run: dict[str, Any]) -> str:
    if run["verdict"] == "error" and run["error"]:
        return str(run["error"])
    if run["broken"]:
        return "; ".join(b["detail"] for b in run["broken"])
    by = ""
    if run["blocked_by"]:
        by = f"by {run['blocked_by']}" + (f" at {run['step']}" if run["step"] else "")
    message = run["message"] or run["error"] or ""
    return f"{by}: {message}" if by and message else by or message
