"""Real clients against real TLS: `mitmlab check --view clients`, every real client (curl, Python's
urllib and requests, openssl s_client, headless Chromium) run as a program against every TLS attack
through the real mitmproxy, in front of the real HTTPS bank.

The expectations live here, and only here: the product reads each client's words and computes each
verdict from the evidence.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lab.cli.check import _victims_table
from lab.clients.adapters import CLIENTS
from lab.report.writers import FILES
from lab.stacks import attacks_on
from lab.stacks.real_tls import REAL_TLS
from tests.world import verdicts_unchanged_since_before_stacks

pytestmark = pytest.mark.system

CARELESS = {"python-urllib-careless", "curl-careless", "chromium-careless"}
"""The careless user installed the rogue CA in these."""
PINNED = {"curl-pinned", "curl-careless-pinned"}
CRL_CHECKED = {"python-urllib-crl", "curl-crl", "openssl-crl"}
HSTS_KNOWN = {"curl-hsts-known", "chromium-hsts"}
TYPES_HTTP = {"curl-hsts-empty", "chromium", "chromium-careless", *HSTS_KNOWN}
"""These start from http://bank.lab, as a browser's user who types bank.lab does."""
CERTIFICATE_CHECK = {"self-signed": "ca_trust", "wrong-host": "hostname", "expired-cert": "validity"}


def expected(attack: str, client: str) -> tuple[str, str | None]:
    """The verdict and the protection, as real clients give them."""
    if attack == "none":
        return "unaffected", None
    if attack in ("eavesdrop", "sslstrip") and client in HSTS_KNOWN:
        return "blocked", "hsts"  # never a plain-HTTP request: the TLS passes through
    if attack == "eavesdrop":
        return "unaffected", None  # the password and the cookie only ever cross in TLS
    if attack == "sslstrip":
        return ("compromised", None) if client in TYPES_HTTP else ("unaffected", None)
    if client == "curl-k":
        return "compromised", None  # -k accepts any certificate
    if attack in CERTIFICATE_CHECK:
        return "blocked", CERTIFICATE_CHECK[attack]
    if attack == "untrusted-root":
        return "blocked", "ca_trust"
    if attack == "rogue-ca":
        if client in CARELESS:
            return "compromised", None
        # A pin is checked after the chain: only the careless user who pinned gets as far as the pin.
        return ("blocked", "pinning") if client == "curl-careless-pinned" else ("blocked", "ca_trust")
    assert attack == "revoked"
    if client in CRL_CHECKED:
        return "blocked", "revocation"
    return ("blocked", "pinning") if client in PINNED else ("compromised", None)  # nobody else checks


@pytest.fixture
def checked(clients_check: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    return clients_check


def cell_of(report: dict[str, Any], attack: str, client: str) -> dict[str, Any]:
    [cell] = [c for c in report["clients"] if c["attack"] == attack and c["client"] == client]
    assert isinstance(cell, dict)
    return cell


def programs(out: Path, cell: dict[str, Any]) -> list[dict[str, Any]]:
    lines = (out / cell["evidence"] / "client.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "program_ran"]


def test_every_client_meets_every_tls_attack_with_the_verdict_real_clients_give(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: ./run-tests installs it as root")
    _, report = checked
    rows = ["none", *attacks_on(REAL_TLS)]
    assert report["sections"]["clients"]["rows"] == rows
    assert [c["id"] for c in report["sections"]["clients"]["columns"]] == list(CLIENTS)
    measured = {(c["attack"], c["client"]): (c["verdict"], c["protection"]) for c in report["clients"]}
    wanted = {(a, c): expected(a, c) for a in rows for c in CLIENTS}
    assert measured == wanted, {k: (measured.get(k), v) for k, v in wanted.items() if measured.get(k) != v}


def test_the_stacks_as_plug_ins_judge_every_cell_as_before(checked: tuple[Path, dict[str, Any]]) -> None:
    _, report = checked
    assert verdicts_unchanged_since_before_stacks(report) == len(CLIENTS) * (1 + len(attacks_on(REAL_TLS)))


def test_the_clients_refuse_in_their_own_words(checked: tuple[Path, dict[str, Any]]) -> None:
    out, report = checked
    for attack in ("self-signed", "wrong-host", "expired-cert", "untrusted-root"):
        curl = cell_of(report, attack, "curl")
        assert [p["exit_code"] for p in programs(out, curl)] == [60], attack
        assert curl["words"].startswith("curl: (60) SSL")
    python = cell_of(report, "wrong-host", "python-urllib")
    assert "Hostname mismatch, certificate is not valid for 'bank.lab'" in python["words"]
    assert "certificate revoked" in cell_of(report, "revoked", "python-urllib-crl")["words"]
    assert "certificate revoked" in cell_of(report, "revoked", "curl-crl")["words"]
    assert "verify error:num=23:certificate revoked" in cell_of(report, "revoked", "openssl-crl")["words"]
    assert "(90)" in cell_of(report, "rogue-ca", "curl-careless-pinned")["words"]
    chromium = {
        "self-signed": "ERR_CERT_AUTHORITY_INVALID",
        "untrusted-root": "ERR_CERT_AUTHORITY_INVALID",
        "wrong-host": "ERR_CERT_COMMON_NAME_INVALID",
        "expired-cert": "ERR_CERT_DATE_INVALID",
    }
    for attack, words in chromium.items():
        assert words in cell_of(report, attack, "chromium")["words"], attack
    assert "due to HSTS" in cell_of(report, "sslstrip", "curl-hsts-known")["words"]
    assert "HSTS" in cell_of(report, "sslstrip", "chromium-hsts")["words"]


def test_what_a_compromise_rests_on_is_in_the_evidence(checked: tuple[Path, dict[str, Any]]) -> None:
    out, report = checked
    by_id = {s["id"]: s for s in report["scenarios"]}
    stripped = by_id[cell_of(report, "sslstrip", "chromium")["run"]]
    kinds = {b["kind"] for b in stripped["evidence"]["broken"]}
    # The password crossed in a plain HTTP form, the cookie lost Secure, and eve got paid with it.
    assert {"password_read", "cookie_read", "transfer_forged"} <= kinds
    accepted = by_id[cell_of(report, "rogue-ca", "curl-careless")["run"]]
    assert "forged_server_accepted" in {b["kind"] for b in accepted["evidence"]["broken"]}
    # No password in any evidence the report points to: the client's words and argv are masked.
    password = next(
        e["value"]
        for e in map(
            json.loads, (out / stripped["evidence"]["dir"] / "attacker.jsonl").read_text().splitlines()
        )
        if e["event"] == "read" and e["secret"] == "password"
    )
    assert password not in (out / stripped["evidence"]["dir"] / "client.jsonl").read_text()


def test_each_cell_keeps_the_tls_key_logs_for_its_capture(checked: tuple[Path, dict[str, Any]]) -> None:
    out, report = checked
    cell = cell_of(report, "revoked", "curl")
    for role in ("client", "attacker"):
        keylog = (out / cell["evidence"] / f"{role}.keylog").read_text()
        assert "CLIENT_TRAFFIC_SECRET_0" in keylog or "CLIENT_RANDOM" in keylog, role


def test_the_table_is_in_every_report_format(checked: tuple[Path, dict[str, Any]]) -> None:
    out, report = checked
    for name in FILES:
        assert (out / name).stat().st_size > 0
    assert report["version"] == 5
    assert {"client", "attack", "verdict", "protection", "words", "evidence"} <= set(report["clients"][0])
    html = (out / "report.html").read_text()
    assert 'id="clients-table"' in html and "ERR_CERT_COMMON_NAME_INVALID" in html
    markdown = (out / "report.md").read_text()
    assert "## clients: real clients against real TLS" in markdown and "| curl-careless-pinned |" in markdown
    assert "testcase" in (out / "junit.xml").read_text()


def test_the_terminals_clients_table_fits_100_columns_with_every_name_whole(
    checked: tuple[Path, dict[str, Any]],
) -> None:
    _, report = checked
    terminal = Console(width=100, record=True, color_system=None)
    terminal.print(_victims_table(report, "clients"))
    lines = terminal.export_text().splitlines()
    assert "…" not in "\n".join(lines) and max(len(line) for line in lines) <= 100
    words = {word for line in lines for word in line.split()}
    assert {c["id"] for c in report["sections"]["clients"]["columns"]} <= words
    header = " ".join(lines[2:4])  # each attack's name on one line, or split after its hyphen
    for attack in report["sections"]["clients"]["rows"]:
        assert all(part in header for part in attack.replace("-", "- ").split()), attack
