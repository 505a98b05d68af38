"""Serving reports over HTTP: one report directory, or (`newest`) the newest report in a folder of
them, looked up at every request, so the compose lab's `report` service shows the check that has just
finished without a restart.

Only regular files inside the report directory are served, each opened without following a link at
any step (`lab.files.open_inside`): a link planted in the folder (`rootfs -> /`) is a 404, as are
folders (no listings) and paths with `..`. `/`, with any query string (`/?only=<run>`), is report.html.
"""

from __future__ import annotations

import http.server as http_server  # `from mitmproxy import http` elsewhere shadows nothing here
import io
import os
import re
import stat
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO

from lab.files import open_inside

WAITING_PAGE = b"""<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>mitm-lab: the check is running</title>
<p>No report yet: the check is running. This page reloads every 3 seconds.</p>"""


def newest_report(reports: Path, lab: str | None = None) -> Path | None:
    """The most recent directory of `reports` with a complete report (of compose lab `lab`, if given);
    a link is never one, nor a report whose files are links."""
    name = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(lab)}" if lab else r".+")
    found = [
        Path(entry.path)
        for entry in os.scandir(reports)
        if name.fullmatch(entry.name)
        and entry.is_dir(follow_symlinks=False)
        and _regular(Path(entry.path) / "report.html")
        and _regular(Path(entry.path) / "report.json")
    ]
    return max(found, key=lambda d: (d / "report.json").lstat().st_mtime, default=None)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


class _ReportHandler(http_server.SimpleHTTPRequestHandler):
    root: Path
    """The report directory; with `newest`, the folder of reports."""
    newest: bool
    lab: str | None

    def send_head(self) -> Any:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        inside = path.removeprefix("/") or "report.html"  # `/` with any query: `/?only=<run>`
        if self.newest:
            current = newest_report(self.root, self.lab)
            if current is None:
                return self._ok(io.BytesIO(WAITING_PAGE), "text/html; charset=utf-8", len(WAITING_PAGE))
            inside = f"{current.name}/{inside}"
        file = open_inside(self.root, inside)
        if file is None:
            self.send_error(404, "Not a file of the report")
            return None
        return self._ok(file, self.guess_type(inside), os.fstat(file.fileno()).st_size)

    def _ok(self, body: BinaryIO, content_type: str, length: int) -> BinaryIO:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        return body


def report_server(
    directory: Path, host: str, port: int, *, newest: bool = False, lab: str | None = None
) -> http_server.ThreadingHTTPServer:
    """An HTTP server (not yet serving) for `directory`; raises OSError when it cannot listen."""
    handler = type("ReportHandler", (_ReportHandler,), {"root": directory, "newest": newest, "lab": lab})
    return http_server.ThreadingHTTPServer((host, port), handler)
