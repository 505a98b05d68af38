"""Writing a report directory from the report's data (see `lab.report.model`)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from lab.checker.views import CELL_KINDS

FILES: Final = ("report.json", "report.md", "report.html", "junit.xml")
SYMBOL: Final = {"compromised": "✗", "blocked": "✓", "unaffected": "-", "error": "!"}
CELL_TEXT: Final = {kind.value: kind.text for kind in CELL_KINDS}
CELL_GLYPH: Final = {kind.value: kind.glyph for kind in CELL_KINDS}
"""The headline cells in words (HTML, Markdown) and in one character (the terminal)."""

_templates = Environment(
    loader=PackageLoader("lab.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(SYMBOL=SYMBOL, CELL_TEXT=CELL_TEXT, CELL_KINDS=CELL_KINDS)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    context = _context(report, out)
    (out / "report.md").write_text(_templates.get_template("report.md.j2").render(**context))
    (out / "report.html").write_text(_templates.get_template("report.html.j2").render(**context))
    (out / "junit.xml").write_bytes(junit(report))


def load_report(directory: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return report


def _context(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """What the templates need besides the data: each run once, placements looked up by view, and
    each run's sequence diagram, to inline (an SVG the lab drew with ElementTree from its capture)."""
    runs: dict[str, dict[str, Any]] = {}
    by_view: dict[tuple[str, str, str], dict[str, Any]] = {}
    for scenario in report["scenarios"]:
        runs.setdefault(scenario["id"], {**scenario, "placements": []})["placements"].append(
            f"{scenario['view']}: {scenario['label']}"
        )
        by_view[(scenario["view"], scenario["attack"], scenario["label"])] = scenario
    verdict_of = {sid: run["verdict"] for sid, run in runs.items()}
    diagrams = {
        sid: Markup(_svg(out / run["evidence"]["diagram"]))
        for sid, run in runs.items()
        if run["evidence"].get("diagram")
    }
    return {
        "r": report,
        "runs": list(runs.values()),
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
    """One test case per scenario placement: compromised is a failure, error an error, the rest pass."""
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
            lines = [f"{t['ms']:8.1f} ms {t['role']:>8}  {t['text']}" for t in s["evidence"]["timeline"]]
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suites)
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml
