"""`mitmlab probe -- COMMAND`: a program the lab does not ship, as the victim of every TLS attack."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.processes import mitmlab

pytestmark = pytest.mark.system

CARELESS = '''
"""A customer's script that turned certificate checks off, "just to make it work"."""
import http.cookiejar, os, socket, ssl, sys, urllib.parse, urllib.request

url, address = sys.argv[1], sys.argv[2]
resolve = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: resolve(address if host == "bank.lab" else host, *a, **k)
opener = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
)
form = {"user": os.environ["MITMLAB_USER"], "password": os.environ["MITMLAB_PASSWORD"]}
print(opener.open(url + "login", urllib.parse.urlencode(form).encode(), timeout=10).read().decode())
'''
INTERCEPTING = ("self-signed", "wrong-host", "expired-cert", "untrusted-root", "rogue-ca", "revoked")


def test_a_script_that_checks_nothing_is_compromised_by_every_forged_certificate(tmp_path: Path) -> None:
    script = tmp_path / "careless.py"
    script.write_text(CARELESS)
    out = tmp_path / "report"
    result = mitmlab(
        "probe", "--out", str(out), "--", sys.executable, str(script), "{url}", "{address}", timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    verdicts = {cell["attack"]: cell["verdict"] for cell in report["clients"]}
    assert verdicts == {
        "none": "unaffected",
        "eavesdrop": "unaffected",  # it typed https://: nothing crossed in the clear
        "sslstrip": "unaffected",
        **dict.fromkeys(INTERCEPTING, "compromised"),
    }
    [column] = report["sections"]["clients"]["columns"]
    assert column["id"].startswith("probe: ") and str(script) in column["id"]
    assert "your program" in result.stdout  # the terminal's table
    assert (out / "report.html").read_text().count('id="clients-table"') == 1


def test_a_program_that_is_not_there_or_a_placeholder_that_is_not_one_is_a_usage_error() -> None:
    missing = mitmlab("probe", "--", "no-such-client-anywhere", "{url}")
    assert missing.returncode == 2 and "is not a program on PATH" in missing.stderr
    unknown = mitmlab("probe", "--", sys.executable, "{ur}")
    assert unknown.returncode == 2 and "unknown placeholders ['ur']" in unknown.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr
