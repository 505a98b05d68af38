"""The report for a class (issue 21): the run list filtered in headless Chromium, each run's line in
words, and the defects a class saw (backticks and lone dots in the defence sets, HTML entities in
report.md, the matrix legend and its colours, a real client's empty column, a timeline where the
attacker changes a record before the client sent it). Each report is rewritten from a session check's
report.json (conftest) into a folder of the test's own: no new check runs here."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from markupsafe import escape

from lab.checker.views import CELL_KINDS
from lab.report.runs import LAB_CLIENT
from lab.report.writers import SYMBOL, write_report

pytestmark = pytest.mark.system


class Runs(HTMLParser):
    """The run list as the DOM holds it: each run's id, whether it is hidden, and its summary line."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, bool] = {}
        self.said: dict[str, str] = {}
        self._in_said: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "details" and found.get("class") == "run":
            self._run = str(found["id"]).removeprefix("run-")
            self.runs[self._run] = "hidden" in found
        if tag == "span" and "said" in (found.get("class") or "").split():
            self._in_said = self._run
            self.said[self._run] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_said = None

    def handle_data(self, data: str) -> None:
        if self._in_said is not None:
            self.said[self._in_said] += data


def runs_in(html: str) -> Runs:
    parser = Runs()
    parser.feed(html)
    return parser


def written(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(mode=0o700)
    write_report(report, out)
    return out


@pytest.fixture(scope="module")
def channel_report(
    channel_check: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """The lab channel's check (conftest), written again by this lab's writers."""
    _, report = channel_check
    return written(report, tmp_path_factory.mktemp("channel") / "report"), report


@pytest.fixture(scope="module")
def clients_report(
    clients_check: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    _, report = clients_check
    return written(report, tmp_path_factory.mktemp("clients") / "report"), report


def dom(page: Path, query: dict[str, str]) -> str:
    """The page's DOM after its script ran, in headless Chromium, opened with `query`."""
    binary = shutil.which("chromium")
    assert binary, "headless Chromium is needed: apt-get install chromium (./run-tests does it as root)"
    url = f"{page.as_uri()}?{urlencode(query)}"
    done = subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


def test_the_run_filter_in_chromium_shows_the_runs_of_the_groups_chosen(
    channel_report: tuple[Path, dict[str, Any]],
) -> None:
    out, report = channel_report
    placed: dict[str, set[str]] = {}
    for s in report["scenarios"]:
        placed.setdefault(s["id"], set()).add(s["view"])
    verdict = {s["id"]: s["verdict"] for s in report["scenarios"]}
    attack = {s["id"]: s["attack"] for s in report["scenarios"]}
    compromised_in_ablation = {i for i in placed if "ablation" in placed[i] and verdict[i] == "compromised"}
    replays = {i for i in placed if attack[i] == "replay" and verdict[i] == "blocked"}
    searched = next(iter(sorted(placed)))
    for query, expected in (
        ({"view": "ablation", "verdict": "compromised"}, compromised_in_ablation),
        ({"attack": "replay", "verdict": "blocked", "client": LAB_CLIENT}, replays),
        ({"q": searched[-8:]}, {i for i in placed if searched[-8:] in i}),
        ({}, set(placed)),
    ):
        page = dom(out / "report.html", query)
        shown = {run for run, hidden in runs_in(page).runs.items() if not hidden}
        assert shown == expected and expected, query
        assert f'<output id="run-count">{len(expected)} of {len(placed)} runs</output>' in page
    counted = dom(out / "report.html", {"view": "ablation"})
    in_ablation = Counter(verdict[i] for i in placed if "ablation" in placed[i])
    for value, count in in_ablation.items():  # each verdict's count under the view chosen
        assert f'<option value="{value}" data-count="{count}">{value} ({count})</option>' in counted


def test_without_script_every_run_shows_and_the_filter_is_hidden(
    channel_report: tuple[Path, dict[str, Any]],
) -> None:
    out, report = channel_report
    html = (out / "report.html").read_text()
    assert re.search(r'<form class="filter" id="run-filter" hidden>', html)
    listed = runs_in(html).runs
    assert set(listed) == {s["id"] for s in report["scenarios"]} and not any(listed.values())
    assert "<script src" not in html and "cdn" not in html.lower()


def test_each_runs_line_says_what_attacked_what_the_verdict_and_why(
    channel_report: tuple[Path, dict[str, Any]],
) -> None:
    out, report = channel_report
    said = runs_in((out / "report.html").read_text()).said
    for s in report["scenarios"]:
        line = said[s["id"]]
        assert line.startswith(f"{s['attack']} against {s['profile']}: {s['verdict']}: "), line
        if s["broken"]:
            assert s["broken"][0]["detail"] in line
        if s["blocked_by"]:
            assert f"by {s['blocked_by']}" in line
    replayed = next(
        s
        for s in report["scenarios"]
        if s["view"] == "ablation" and s["label"] == "sequence_numbers" and s["attack"] == "replay"
    )
    assert said[replayed["id"]].startswith("replay against recommended -sequence_numbers: compromised: ")


def defence_sets_text(html: str) -> str:
    section = html[html.index('<h2 id="defence-sets">') :]
    return re.sub(r"<[^>]+>", "", section[: section.index("</section>")])


def test_the_defence_sets_show_names_as_code_and_no_lone_dots(
    channel_report: tuple[Path, dict[str, Any]],
) -> None:
    out, report = channel_report
    html = (out / "report.html").read_text()
    text = defence_sets_text(html)
    assert "`" not in text and "·" not in text
    replay = report["sections"]["defence-sets"]["attacks"]["replay"]
    assert "`mac`" in replay["line"] and "<code>mac</code>" in html
    verdict = {s["id"]: s["verdict"] for s in report["scenarios"]}
    for found in replay["sets"]:  # each set's runs without one of its protections, in words
        without = ", ".join(f"without {p} {SYMBOL[verdict[run]]}" for p, run in found["without_one"].items())
        assert f"({without})" in re.sub(r"\s+", " ", text)


def test_report_md_carries_no_html_entities(channel_report: tuple[Path, dict[str, Any]]) -> None:
    out, _ = channel_report
    markdown = (out / "report.md").read_text()
    assert not re.search(r"&(#\d+|amp|lt|gt|quot|apos);", markdown)
    assert "attack's floor" in markdown  # a legend with an apostrophe, as written


def css_rules(html: str) -> dict[str, dict[str, str]]:
    style = re.sub(
        r"/\*.*?\*/", "", html[html.index("<style>") + len("<style>") : html.index("</style>")], flags=re.S
    )
    rules = {}
    for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", style):
        declarations = dict(d.split(":", 1) for d in body.split(";") if ":" in d)
        rules[selector.strip()] = {k.strip(): v.strip() for k, v in declarations.items()}
    return rules


def test_the_matrix_legend_explains_each_cell_kind_in_its_own_colour(
    channel_report: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = channel_report
    html = (out / "report.html").read_text()
    legend = html[html.index('<ul class="legend" id="matrix-legend">') :]
    legend = legend[: legend.index("</ul>")]
    for kind in CELL_KINDS:
        assert f'<li><span class="{kind.value}">{kind.text}</span>{escape(kind.legend)}</li>' in legend
    before_ladder = html[html.index('<table id="matrix">') : html.index('<h2 id="ladder">')]
    assert "compromised" not in re.sub(r"<[^>]+>", "", before_ladder)  # the verdicts' symbols: not here
    rules = css_rules(html)
    colours = {
        k.value: (rules[f".{k.value}"].get("background"), rules[f".{k.value}"]["color"]) for k in CELL_KINDS
    }
    assert len(set(colours.values())) == len(CELL_KINDS), colours
    compromised = rules[".v-compromised"]["color"]
    red = rules[":root"]["--bad"] if compromised == "var(--bad)" else compromised
    for background, colour in colours.values():
        assert red not in (background, colour) and compromised not in (background, colour)


def test_a_real_clients_run_has_the_clients_name_and_own_words_in_its_column(
    clients_report: tuple[Path, dict[str, Any]],
) -> None:
    out, report = clients_report
    html = (out / "report.html").read_text()
    for s in (s for s in report["scenarios"] if s["stack"] == "real-tls"):
        mine = [t["text"] for t in s["evidence"]["timeline"] if t["role"] == "client"]
        visited = s["client_outcome"] and s["client_outcome"].get("visited")
        assert mine, s["id"]
        if visited and not visited["missing"]:
            words = f"{s['profile']}, in its own words: {visited['words']}"
            assert any(line.startswith(words) for line in mine), (words, mine)
        run = html[html.index(f'<details class="run" id="run-{s["id"]}">') :]
        assert f"<th>client: {s['profile']}</th>" in run[: run.index("</details>")]


def test_the_timeline_never_shows_the_attacker_changing_a_record_before_the_client_sent_it(
    channel_check: tuple[Path, dict[str, Any]],
) -> None:
    """Every transfer the attacker changed (bit-flip: the recipient) was sent by the client before: its
    line stamps the moment the record left, not the moment `send` returned."""
    _, report = channel_check
    changed = 0
    for s in report["scenarios"]:
        timeline = s["evidence"]["timeline"]
        for at, line in enumerate(timeline):
            if line["event"] == "changed" and "transfer" in line["text"]:
                changed += 1
                sent = [t for t in timeline[:at] if t["event"] == "record_sent" and "transfer" in t["text"]]
                assert sent, (s["id"], timeline)
    assert changed > 0
