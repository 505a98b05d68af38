"""Serving reports over HTTP: one report directory, or (`newest`) the newest report in a folder of
them, looked up at every request, so the compose lab's `report` service shows the check that has just
finished without a restart."""

from __future__ import annotations

import functools
import http.server as http_server  # `from mitmproxy import http` elsewhere shadows nothing here
import io
import re
from pathlib import Path
from typing import Any

WAITING_PAGE = b"""<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>mitm-lab: the check is running</title>
<p>No report yet: the check is running. This page reloads every 3 seconds.</p>"""


def newest_report(reports: Path, lab: str | None = None) -> Path | None:
    """The most recent directory of `reports` with a complete report (of compose lab `lab`, if given)."""
    name = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(lab)}" if lab else r".+")
    found = [
        d
        for d in reports.iterdir()
        if name.fullmatch(d.name) and (d / "report.html").is_file() and (d / "report.json").is_file()
    ]
    return max(found, key=lambda d: (d / "report.json").stat().st_mtime, default=None)


class _NewestReportHandler(http_server.SimpleHTTPRequestHandler):
    reports: Path
    lab: str | None

    def send_head(self) -> Any:
        current = newest_report(self.reports, self.lab)
        if current is None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(WAITING_PAGE)))
            self.end_headers()
            return io.BytesIO(WAITING_PAGE)
        self.directory = str(current)
        if self.path in ("", "/"):
            self.path = "/report.html"
        return super().send_head()


def report_server(
    directory: Path, host: str, port: int, *, newest: bool = False, lab: str | None = None
) -> http_server.ThreadingHTTPServer:
    """An HTTP server (not yet serving) for `directory`; raises OSError when it cannot listen."""
    if newest:
        handler: Any = type(
            "NewestReportHandler", (_NewestReportHandler,), {"reports": directory, "lab": lab}
        )
    else:
        handler = functools.partial(http_server.SimpleHTTPRequestHandler, directory=str(directory))
    return http_server.ThreadingHTTPServer((host, port), handler)
