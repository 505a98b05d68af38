"""Writing a report directory from the report's data (see `lab.report.model`)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from lab import files
from lab.checker.views import CELL_KINDS
from lab.report.runs import FILTERS, group_counts, groups_of, said
from lab.verdict import NOT_RUN_HERE

FILES: Final = ("report.json", "report.md", "report.html", "junit.xml")
EVIDENCE: Final = "evidence"
"""The folder of every run's evidence (its files hold secrets: 0600 in 0700 folders)."""
SYMBOL: Final = {"compromised": "✗", "blocked": "✓", "unaffected": "-", "error": "!", NOT_RUN_HERE: "∅"}
CELL_TEXT: Final = {kind.value: kind.text for kind in CELL_KINDS}
CELL_GLYPH: Final = {kind.value: kind.glyph for kind in CELL_KINDS}
"""The headline cells in words (HTML, Markdown) and in one character (the terminal)."""

_templates = Environment(
    loader=PackageLoader("lab.report", "templates"),
    autoescape=select_autoescape(["html.j2"], default_for_string=False),  # Markdown is not HTML
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(SYMBOL=SYMBOL, CELL_TEXT=CELL_TEXT, CELL_KINDS=CELL_KINDS, FILTERS=FILTERS)


def code_spans(text: str) -> Markup:
    """Text that marks names `like this` (the terminal's and Markdown's way), as HTML: escaped, each
    marked name in <code>."""
    parts = str(escape(text)).split("`")
    if len(parts) % 2 == 0:  # an odd backtick: no span of it
        return Markup(escape(text))
    return Markup("".join(f"<code>{part}</code>" if n % 2 else part for n, part in enumerate(parts)))


_templates.filters["code_spans"] = code_spans


class NotAReport(Exception):
    """A report.json that this lab cannot read as a report; the message says which."""


def prepare_report_folder(out: Path) -> None:
    """`out` ready for a report, before any run: a new folder (0700, made here), an empty folder of
    this user's, or a previous report of this user's, which is cleared. Anything else raises
    `files.UnsafeFolderError`: another user's folder, a link, or a folder holding what no report left."""
    try:
        out.lstat()
    except FileNotFoundError:
        out.parent.mkdir(parents=True, exist_ok=True)
        files.make_fresh_folder(out)
        return
    files.require_own_folder(out)
    entries = list(os.scandir(out))
    for entry in entries:
        if not _left_by_a_report(entry):
            raise files.UnsafeFolderError(
                f"{out} holds {entry.name!r}, which no report leaves: give a new folder, an empty one "
                "or a previous report's"
            )
    files.close_folder(out)
    for entry in entries:
        if entry.name == EVIDENCE:
            shutil.rmtree(entry.path)  # removes links inside, never what they point to
        else:
            os.unlink(entry.path)


def _left_by_a_report(entry: os.DirEntry[str]) -> bool:
    """A report's own file (a regular file) or its evidence folder (a real folder)."""
    mode = entry.stat(follow_symlinks=False).st_mode
    if entry.name == EVIDENCE:
        return stat.S_ISDIR(mode)
    return entry.name in FILES and stat.S_ISREG(mode)


def write_report(report: dict[str, Any], out: Path) -> None:
    """The report's own files, meant to be shared (0644), into `out`: a folder of this user's that
    nobody else can write (made when missing)."""
    files.own_folder(out)
    files.write_shared(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    context = _context(report, out)
    files.write_shared(out / "report.md", _templates.get_template("report.md.j2").render(**context))
    files.write_shared(out / "report.html", _templates.get_template("report.html.j2").render(**context))
    files.write_shared(out / "junit.xml", junit(report))


def load_report(directory: Path) -> dict[str, Any]:
    """The report in `directory`; `NotAReport` when its report.json is not one (OSError when unreadable)."""
    try:
        report = json.loads((directory / "report.json").read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAReport(f"{directory / 'report.json'} is not JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") != "mitm-lab/report":
        raise NotAReport(f"{directory / 'report.json'} is not a mitm-lab report")
    return report


def _context(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """What the templates need besides the data: each run once, placements looked up by view, and
    each run's sequence diagram, to inline (an SVG the lab drew with ElementTree from its capture)."""
    runs: dict[str, dict[str, Any]] = {}
    by_view: dict[tuple[str, str, str], dict[str, Any]] = {}
    for scenario in report["scenarios"]:
        run = runs.setdefault(scenario["id"], {**scenario, "placements": [], "views": []})
        run["placements"].append(f"{scenario['view']}: {scenario['label']}")
        run["views"].append(scenario["view"])
        by_view[(scenario["view"], scenario["attack"], scenario["label"])] = scenario
    for run in runs.values():
        run.update(groups=groups_of(run), said=said(run))
    order = {"view": report["views"], "attack": report["attacks"], "verdict": list(SYMBOL)}
    verdict_of = {sid: run["verdict"] for sid, run in runs.items()}
    diagrams = {
        sid: Markup(_svg(out / run["evidence"]["diagram"]))
        for sid, run in runs.items()
        if run["evidence"].get("diagram")
    }
    return {
        "r": report,
        "runs": list(runs.values()),
        "groups": group_counts(list(runs.values()), order),
        "at": by_view,
        "verdict_of": verdict_of,
        "diagrams": diagrams,
    }


def _svg(path: Path) -> str:
    """The diagram's SVG; where it cannot be read, a sentence that says so."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        return f'<p class="v-error">The sequence diagram could not be read: {escape(str(exc))}</p>'


def junit(report: dict[str, Any]) -> bytes:
    """One test case per scenario placement: compromised is a failure, error an error, not-run-here
    skipped, the rest pass."""
    suites = ET.Element("testsuites", name="mitm-lab check", time=str(report["summary"]["duration_s"]))
    for view in report["views"]:
        placed = [s for s in report["scenarios"] if s["view"] == view]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=view,
            tests=str(len(placed)),
            failures=str(sum(s["verdict"] == "compromised" for s in placed)),
            errors=str(sum(s["verdict"] == "error" for s in placed)),
            skipped=str(sum(s["verdict"] == NOT_RUN_HERE for s in placed)),
        )
        for s in placed:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{view}.{s['attack']}",
                name=f"{s['label']} ({s['profile']})",
                time=f"{s['duration_ms'] / 1000:.3f}",
            )
            properties = ET.SubElement(case, "properties")
            for name in ("id", "verdict", "blocked_by", "step"):
                ET.SubElement(properties, "property", name=name, value=str(s[name]))
            if s["verdict"] == "compromised":
                detail = "; ".join(b["detail"] for b in s["broken"])
                ET.SubElement(case, "failure", message=detail, type="compromised").text = detail
            elif s["verdict"] == "error":
                ET.SubElement(case, "error", message=str(s["error"]), type="lab-error").text = str(s["error"])
            elif s["verdict"] == NOT_RUN_HERE:
                ET.SubElement(case, "skipped", message=str(s["message"]))
            lines = [f"{t['ms']:8.1f} ms {t['role']:>8}  {t['text']}" for t in s["evidence"]["timeline"]]
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suites)
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml
