"""The evidence schema: every event is documented, each role writes only its own, and a line that is not
an event of its role's schema is a typed error naming the line and what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import events
from lab.evidence import EvidenceLog, parse_lines
from lab.stacks import EVERY_PROTECTION
from tests.world import read_evidence

DOC = (Path(__file__).resolve().parent.parent / "docs" / "evidence.md").read_text()


def test_every_event_of_every_role_is_in_docs_evidence_md() -> None:
    documented = set(re.findall(r"^\| `(\w+)`", DOC, flags=re.MULTILINE))
    documented |= set(re.findall(r"^\| `\w+` / `(\w+)`", DOC, flags=re.MULTILINE))
    written = {event.__struct_config__.tag for kinds in events.EVENTS.values() for event in kinds}
    assert written - documented == set()


def test_a_role_writes_only_its_own_events_and_reads_them_back_typed(tmp_path: Path) -> None:
    log = EvidenceLog(tmp_path / "server.jsonl", "server")
    with pytest.raises(TypeError, match="not an event the server records"):
        log.record(events.Connecting(host="h", port=1, server_name="bank.lab", protections={}))
    log.record(
        events.TransferExecuted(session="s", seq=1, transfer=1, from_account="alice", to="bob", amount=5)
    )
    [executed] = read_evidence(tmp_path / "server.jsonl", "server")
    assert isinstance(executed, events.TransferExecuted) and (executed.role, executed.to) == ("server", "bob")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            b'{"event":"transfer_executed","ts":"2026-12-01T00:00:00+00:00","role":"server"}',
            "missing required field",
        ),
        (b'{"event":"transfer_exekuted","ts":"2026-12-01T00:00:00+00:00","role":"server"}', "Invalid value"),
        (
            b'{"event":"session_closed","ts":"2026-12-01T00:00:00+00:00","role":"server","sesion":"s"}',
            "unknown field",
        ),
        (
            b'{"event":"request","ts":"x","role":"server","session":"s","seq":"1","op":null,"error":null}',
            "Expected `int`",
        ),
        (b'{"event":"session_closed","ts":"yesterday","role":"server"}', "no ISO 8601 time"),
        (b'{"event":"session_closed","ts":"2026-12-01T00:00:00+00:00","role":"client"}', "'client' event"),
        (b'{"event": "session_cl', "not JSON"),
        (
            b'{"event":"refusal","ts":"2026-12-01T00:00:00+00:00","role":"server","protection":"mack",'
            b'"step":"record","message":"m","error":"RecordTampered"}',
            "'mack' is no protection id",
        ),
    ],
)
def test_a_line_that_is_not_an_event_is_a_typed_error_saying_why(line: bytes, reason: str) -> None:
    good = '{"event":"session_closed","ts":"2026-12-01T00:00:00+00:00","role":"server"}'
    parsed, [error] = parse_lines("server", [good] * 6 + [line.decode()] + [good], EVERY_PROTECTION)
    assert len(parsed) == 7  # the lines around it are kept
    assert reason in str(error) and (error.role, error.line) == ("server", 7)


def test_a_torn_last_line_is_left_out_and_every_whole_line_kept(tmp_path: Path) -> None:
    path = tmp_path / "client.jsonl"
    EvidenceLog(path, "client").record(events.NoReply(op="balance"))
    with path.open("a") as file:
        file.write('{"event":"no_re')  # the role died while writing this one
    [kept] = read_evidence(path, "client")
    assert isinstance(kept, events.NoReply)
