"""The benchmarks run and report every row with its reference (speed itself is not asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.processes import mitmlab
from tests.test_ssh import need_openssh

pytestmark = pytest.mark.system


def test_bench_channel_reports_ratios_against_tls(tmp_path: Path) -> None:
    out = tmp_path / "channel.json"
    result = mitmlab(
        "bench", "channel", "--handshakes", "3", "--megabytes", "1", "--repeats", "1", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert rows["lab ECDHE handshakes"]["reference"] == "tls13 handshakes"
    assert rows["lab AES-CTR+HMAC-SHA256"]["reference"] == "tls12 AES-CBC+HMAC-SHA256"
    assert all(row["value"] > 0 for row in rows.values())
    assert all(row["ratio"] > 0 for row in rows.values() if row["reference"])


def test_bench_crypto_reproduces_the_seed_table(tmp_path: Path) -> None:
    out = tmp_path / "crypto.json"
    result = mitmlab("bench", "crypto", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"aes_128_cbc", "rsa_1024", "rsa_2048", "aes_128_cbc bulk"}
    assert rows["rsa_2048"]["ms"] > rows["rsa_1024"]["ms"] > 0  # the one ordering no machine reverses


def test_bench_proxy_compares_the_attacker_with_going_direct(tmp_path: Path) -> None:
    out = tmp_path / "proxy.json"
    result = mitmlab(
        "bench", "proxy", "--sessions", "2", "--megabytes", "1", "--repeats", "1", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert rows["session, through the attacker (median)"]["reference"] == "session, direct (median)"
    assert "attacker adds to a session" in rows
    assert rows["AES-GCM records, through the attacker"]["value"] > 0


def test_bench_check_times_the_check_and_the_search_against_every_subset(tmp_path: Path) -> None:
    """One attack keeps it short (downgrade: its floor holds the MAC, so every subset above is 1024 runs)."""
    out = tmp_path / "check.json"
    result = mitmlab("bench", "check", "--attack", "downgrade", "--json", str(out), timeout=1200)
    assert result.returncode == 0, result.stderr
    table = json.loads(out.read_text())
    rows = {row["name"]: row["value"] for row in table}
    assert rows["runs in error"] == 0 and rows["runs"] > 0 and rows["runs per second (the check)"] > 0
    assert rows["runs in error, all checks"] == 0
    assert {"--view ladder alone", "--view ablation alone", "--view defence-sets alone"} <= {
        name.split(" (")[0] for name in rows
    }
    searched, every = (
        rows["defence-sets search, downgrade: runs"],
        rows["every subset (--exhaustive), downgrade: runs"],
    )
    assert 0 < searched * 20 < every  # the search needs a small part of every subset
    [versus] = [row for row in table if row["name"] == "every subset (--exhaustive), downgrade"]
    assert versus["reference"] == "defence-sets search, downgrade" and versus["ratio"] > 1


def test_bench_clients_compares_a_handshake_through_mitmproxy_with_direct(tmp_path: Path) -> None:
    out = tmp_path / "clients.json"
    result = mitmlab(
        "bench",
        "clients",
        "--handshakes",
        "3",
        *("--client", "curl", "--client", "openssl"),
        "--no-against-check",
        "--json",
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    direct = "TLS handshake, direct (median)"
    for through in ("relaying", "intercepting"):
        row = rows[f"TLS handshake, through mitmproxy {through} (median)"]
        assert row["reference"] == direct and row["value"] > 0
    assert rows["clients view, the other clients: cells"]["value"] == 2 * 9  # two clients, nine rows
    assert rows["clients view, the other clients: runs in error"]["value"] == 0
    assert "clients view, Chromium: cells" not in rows


def test_bench_ssh_compares_a_session_through_the_relay_with_direct_and_times_the_view(
    tmp_path: Path,
) -> None:
    need_openssh()
    out = tmp_path / "ssh.json"
    result = mitmlab("bench", "ssh", "--sessions", "2", "--no-against-check", "--json", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    for kex in ("default key exchange", "curve25519-sha256 forced"):
        for statistic in ("median", "p90"):
            direct = f"session, direct, {kex} ({statistic})"
            through = rows[f"session, through the attacker, {kex} ({statistic})"]
            assert through["reference"] == direct and rows[direct]["value"] > 0 and through["ratio"] > 0
    relayed = rows["sessions through the attacker"]["value"]
    assert relayed == 2 * (2 + 1)  # two sessions and one `ssh -v` per key exchange
    assert rows["passwords the attacker read"]["value"] == relayed  # each really went through the relay
    said = " ".join(result.stdout.split())
    forced = "curve25519-sha256 forced: the client agreed on curve25519-sha256"
    assert f"{forced} with sshd and on curve25519-sha256 with the attacker" in said
    assert rows["mitmlab check --view ssh --no-capture: runs"]["value"] == 32
    assert rows["mitmlab check --view ssh: runs in error"]["value"] == 0
    assert rows["mitmlab check --view ssh --no-capture"]["value"] > 0
