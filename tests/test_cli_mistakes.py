"""Every mistake a user can make in the command line's arguments gets one clear line and a documented
exit code, never a traceback, and leaves the ledger as it was (issue 27). Hypothesis draws hostile
arguments for every command through click's CliRunner; the defects found by hand are examples, through
real processes where the process is the point.

Values no command line can carry are not drawn: NUL (exec cannot pass it), and lone surrogates other
than U+DC80-U+DCFF (Python turns bytes that are not UTF-8 into exactly those)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import string
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab.attacks import ATTACK_IDS
from lab.bank import protocol
from lab.bank.ledger import Ledger
from lab.bank.service import BankSession
from lab.channel.protections import PROFILES, PROTECTION_IDS, PROTECTIONS
from lab.checker.views import VIEWS
from lab.cli import cli
from lab.cli.check import EXIT_RUN_ERRORS
from lab.cli.errors import (
    EXIT_BANK,
    EXIT_CONNECTION,
    EXIT_PEER_REFUSED,
    EXIT_REFUSED,
    EXIT_REPLY_UNREADABLE,
    EXIT_SETUP,
)
from lab.clients.adapters import CLIENTS
from lab.roles.attacker import AttackerError, AttackerRole
from lab.state import StateDir
from tests.processes import background, mitmlab

pytestmark = pytest.mark.loopback

T = TypeVar("T")
DOCUMENTED = {
    0,
    2,
    EXIT_REFUSED,
    EXIT_PEER_REFUSED,
    EXIT_CONNECTION,
    EXIT_BANK,
    EXIT_SETUP,
    EXIT_RUN_ERRORS,
    EXIT_REPLY_UNREADABLE,
}
"""EXIT_CODES_HELP's codes, and 8: a check or probe whose runs ended in error."""


@dataclass(frozen=True)
class Lab:
    state: StateDir
    scratch: Path
    """Files and folders for path arguments: a-file (garbage), empty-dir, report/ (report.json drawn)."""
    closed: int
    """A port on 127.0.0.1 that refuses connections (bound, not listening)."""
    busy: int
    """A port on 127.0.0.1 that is taken (listening), so a server cannot start on it."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("mistakes")
    made = mitmlab("init", "--state-dir", str(root / "state"))
    assert made.returncode == 0, made.stderr
    scratch = root / "scratch"
    scratch.mkdir()
    (scratch / "a-file").write_bytes(b"\x00\xffgarbage\n")
    (scratch / "empty-dir").mkdir()
    (scratch / "report").mkdir()
    with socket.socket() as closed, socket.create_server(("127.0.0.1", 0)) as busy:
        closed.bind(("127.0.0.1", 0))
        yield Lab(StateDir(root / "state"), scratch, closed.getsockname()[1], busy.getsockname()[1])


def state_files(state: StateDir) -> dict[str, bytes]:
    """The state's files but the evidence (which a client's failed dial adds to): the ledger, keys,
    passwords."""
    return {
        str(path.relative_to(state.root)): path.read_bytes()
        for path in sorted(state.root.rglob("*"))
        if path.is_file() and path.relative_to(state.root).parts[0] != "evidence"
    }


@contextmanager
def at_most(seconds: int) -> Iterator[None]:
    """A command drawn to stop at its arguments that starts instead (a server, a check) fails the test
    rather than hanging it."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_clear_line(
    args: list[str], exit_code: int, exception: BaseException | None, output: str
) -> None:
    assert exception is None or isinstance(exception, SystemExit), (args, output, exception)
    assert "Traceback" not in output, output
    assert exit_code in DOCUMENTED, (args, exit_code, output)
    if exit_code != 0:  # click's "Error: ..." after its usage lines, or the lab's "mitmlab: ..."
        said = [line for line in output.splitlines() if line.startswith(("Error:", "mitmlab:"))]
        assert len(said) == 1, (args, output)


# Hostile values -----------------------------------------------------------------------------------------

ARGV_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00") | st.characters(
    min_codepoint=0xDC80, max_codepoint=0xDCFF
)
ARABIC_ONE = "\u0661"
"""A digit to str.isdigit() and int(), not to a port."""
SPECIMENS = (
    "",
    "[red]x",
    "[/x]",
    "[bold]eve",
    "é",
    "\udcff",
    "${x}",
    "\n",
    "a b",
    "\x1b[2J",
    ":smile:",
    "%s%n",
    "-",
    "--help",
)


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SPECIMENS),
        st.text(ARGV_CHARS, max_size=80),
        st.integers(64, 20_000).map(lambda n: "x" * n),
    )


def positional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """What click reads as a value, not as an option (a poisoned command must stay poisoned)."""
    return strategy.filter(lambda text: not text.startswith("-"))


def not_an_int(text: str) -> bool:
    """What click's INT refuses (it converts with int(): ' 1', '1_0' and Arabic-Indic digits are numbers)."""
    try:
        int(text)
    except ValueError:
        return True
    return False


def not_two_ports(text: str) -> bool:
    """Not HTTPS,HTTP: two ports of 0 to 65535, in ASCII digits."""
    ports = text.split(",")
    return len(ports) != 2 or not all(p.isascii() and p.isdigit() and int(p) <= 65535 for p in ports)


def not_among(choices: Collection[str]) -> Callable[[str], bool]:
    return lambda text: text not in choices


def bad_port() -> st.SearchStrategy[str]:
    """Not 0 to 65535 in ASCII digits."""
    return st.one_of(
        st.integers(65536, 10**30).map(str),
        st.integers(max_value=-1).map(str),
        st.sampled_from(["", "x", ARABIC_ONE, " 1", "1e3", "0x10", "9" * 5000]),
        st.text(ARGV_CHARS, max_size=8).filter(
            lambda p: not (p.isascii() and p.isdigit() and int(p) <= 65535)
        ),
    )


def invalid_endpoints() -> st.SearchStrategy[str]:
    """HOST:PORT that is none, by construction (so that nothing is looked up in DNS or listened on)."""
    junk = st.text(
        st.sampled_from([c for c in string.punctuation + " \t\n" if c not in "._-:[]"]),
        min_size=1,
        max_size=20,
    )
    return st.one_of(
        st.text(ARGV_CHARS, max_size=40).filter(lambda text: ":" not in text),
        bad_port().map(lambda port: f"127.0.0.1:{port}"),
        st.integers(64, 300).map(lambda n: "a" * n + ".lab:1"),
        st.sampled_from(["..:1", "a..b:1", ".a:1", ":1", ":", "::1", "[::1:1", "[red]x:1", "[/x]:1", "[]:1"]),
        st.sampled_from(["[1.2.3.4]:1", "x" * 20_000 + ":1", "[::1]:x", f"127.0.0.1:{ARABIC_ONE}"]),
        st.tuples(st.sampled_from(["", "a", "bank."]), junk).map(lambda t: f"{t[0]}{t[1]}:1"),
    )


def paths(lab: Lab) -> st.SearchStrategy[str]:
    named = st.sampled_from([s for s in SPECIMENS if s]) | st.text(
        ARGV_CHARS.filter(lambda c: c != "/"), min_size=1, max_size=40
    )
    return st.one_of(
        st.sampled_from(["a-file", "empty-dir", "missing", "a-file/under", "x" * 300]).map(
            lambda name: str(lab.scratch / name)
        ),
        named.map(lambda name: str(lab.scratch / "empty-dir" / name)),
    )


def amounts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**30), 10**30).map(str),
        st.sampled_from(["0", "1e3", "0x10", " 1", ARABIC_ONE, "9" * 5000]),
        hostile_text(),
    )


def recipients() -> st.SearchStrategy[str]:
    return st.sampled_from(["bob", "eve", "alice"]) | hostile_text()


def mostly(valid: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`valid` three times in four."""
    return st.integers(0, 3).flatmap(lambda n: hostile if n == 0 else valid)


Parts = dict[str, st.SearchStrategy[list[str]]]


def with_hostile_parts(command: list[str], valid: Parts, hostile: Parts) -> st.SearchStrategy[list[str]]:
    """`command` and its parts (each a few arguments), all valid but at most two: a command with one
    hostile part goes as deep as that part lets it, where one with five stops at the first."""
    return st.tuples(
        st.sets(st.sampled_from(list(valid)), max_size=2),
        st.fixed_dictionaries(valid),
        st.fixed_dictionaries(hostile),
    ).map(lambda t: [*command, *(arg for name in valid for arg in (t[2] if name in t[0] else t[1])[name])])


def switches(hostile: bool = False) -> st.SearchStrategy[list[str]]:
    """Protection switches and a profile; with `hostile`, one of them is none."""
    flags = [f"--{p.flag}" for p in PROTECTIONS] + [f"--no-{p.flag}" for p in PROTECTIONS]
    valid = st.lists(
        st.sampled_from(flags).map(lambda flag: [flag]) | pair("--profile", st.sampled_from(list(PROFILES))),
        max_size=3,
    ).map(lambda parts: [arg for part in parts for arg in part])
    if not hostile:
        return valid
    wrong = hostile_text().map(lambda text: [f"--no-{text}"]) | pair("--profile", hostile_text())
    return st.tuples(valid, wrong).map(lambda t: [*t[0], *t[1]])


def names(valid: Collection[str], hostile: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """A protection, attack or view id, or text that is none."""
    return st.sampled_from(list(valid)) | (hostile_text() if hostile is None else hostile)


def options(*choices: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.one_of(*choices), max_size=3).map(
        lambda parts: [arg for part in parts for arg in part]
    )


def pair(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda value: [flag, value])


# The commands -------------------------------------------------------------------------------------------


def client_commands(lab: Lab) -> st.SearchStrategy[list[str]]:
    """The client, dialling a port that refuses (or refused at its arguments)."""
    closed = st.sampled_from([f"127.0.0.1:{lab.closed}", f"localhost:{lab.closed}", f"[::1]:{lab.closed}"])
    valid_transfer = st.tuples(st.integers(1, 10**6).map(str), st.sampled_from(["bob", "eve", "alice"]))
    return with_hostile_parts(
        ["client"],
        {
            "connect": pair("--connect", closed),
            "name": st.sampled_from([[], ["--server-name", "bank.lab"]]),
            "switches": switches(),
            "state": st.just(["--state-dir", str(lab.state.root)]),
            "command": st.just(["balance"]) | valid_transfer.map(lambda t: ["transfer", *t]),
        },
        {
            "connect": pair("--connect", invalid_endpoints()),
            "name": pair("--server-name", hostile_text()),
            "switches": switches(hostile=True),
            "state": pair("--state-dir", paths(lab)),
            "command": st.tuples(amounts(), recipients()).map(lambda t: ["transfer", *t]),
        },
    )


def server_commands(lab: Lab) -> st.SearchStrategy[list[str]]:
    """The server, on a port that is taken (or refused at its arguments): it never starts."""
    bad_ports = st.sampled_from(["", ",", "1,", "99999,1", f"{ARABIC_ONE},{ARABIC_ONE}"]) | hostile_text()
    return with_hostile_parts(
        ["server"],
        {
            "listen": st.just(["--listen", f"127.0.0.1:{lab.busy}"]),
            "web": st.just(["--web-ports", "0,0"]),
            "state": st.just(["--state-dir", str(lab.state.root)]),
            "switches": switches(),
            "port_file": st.just([]),
        },
        {
            "listen": pair("--listen", invalid_endpoints()),
            "web": pair("--web-ports", bad_ports),
            "state": st.just(["--state-dir", str(lab.scratch / "a-file")]),
            "switches": switches(hostile=True),
            "port_file": pair("--port-file", paths(lab)),
        },
    )


def poisoned_commands(lab: Lab) -> list[st.SearchStrategy[list[str]]]:
    """Commands that would run for long (a check, a demo, a server of reports, a benchmark): hostile
    arguments, and one that is surely wrong last, so they stop at their arguments."""
    bad_count = st.integers(max_value=0).map(str) | positional(hostile_text()).filter(not_an_int)
    bad_jobs = st.integers(17, 10**20).map(str) | bad_count
    not_attack = positional(hostile_text()).filter(not_among(ATTACK_IDS))
    check = st.tuples(
        options(
            pair("--view", names([*VIEWS, "all"], positional(hostile_text()))),
            pair("--attack", names(ATTACK_IDS, positional(hostile_text()))),
            pair("--out", paths(lab)),
            pair("--positioning", positional(hostile_text())),
        ),
        st.one_of(
            pair("--jobs", bad_jobs),
            pair("--view", positional(hostile_text()).filter(not_among([*VIEWS, "all"]))),
            pair("--attack", not_attack),
        ),
    ).map(lambda t: ["check", *t[0], *t[1]])
    demo = st.tuples(
        st.just([]) | names(ATTACK_IDS, positional(hostile_text())).map(lambda a: [a]),
        switches() | switches(hostile=True),
        st.one_of(
            pair("--profile", positional(hostile_text()).filter(not_among(PROFILES))),
            pair("--server-without", positional(hostile_text()).filter(not_among(PROTECTION_IDS))),
            st.just(["--capture", str(lab.scratch / "empty-dir")]),
        ),
    ).map(lambda t: ["demo", *t[0], *t[1], *t[2]])
    probe = st.tuples(
        st.one_of(pair("--jobs", bad_jobs), pair("--attack", not_attack)),
        st.one_of(
            st.lists(positional(hostile_text()), min_size=1, max_size=3),
            positional(hostile_text()).map(lambda text: ["true", "{" + text]),
        ),
    ).map(lambda t: ["probe", *t[0], "--", *t[1]])
    bench = st.one_of(
        pair("--handshakes", bad_count).map(lambda p: ["bench", "channel", *p]),
        pair("--sessions", bad_count).map(lambda p: ["bench", "proxy", *p]),
        pair("--jobs", bad_jobs).map(lambda p: ["bench", "check", *p]),
        pair("--rounds", bad_count).map(lambda p: ["bench", "capture", *p]),
        pair("--sessions", bad_count).map(lambda p: ["bench", "ssh", *p]),
        pair("--client", positional(hostile_text()).filter(not_among(CLIENTS))).map(
            lambda p: ["bench", "clients", *p]
        ),
        st.sampled_from(["missing/x.json", "empty-dir", "a-file/x.json"]).map(
            lambda name: ["bench", "crypto", "--json", str(lab.scratch / name)]
        ),
    )
    serve = st.tuples(
        options(pair("--lab", hostile_text()), st.just(["--newest"])),
        st.one_of(
            pair("--port", st.integers(65536, 10**20).map(str) | st.integers(max_value=-1).map(str)),
            pair("--port", positional(hostile_text()).filter(not_an_int)),
            pair("--host", positional(hostile_text()).filter(not_among(["127.0.0.1", "localhost", "::1"]))),
        ),
        st.sampled_from(["report", "empty-dir", "missing", "a-file"]).map(
            lambda name: str(lab.scratch / name)
        ),
    ).map(lambda t: ["report", "serve", *t[0], *t[1], t[2]])
    endpoint_flags = ["--listen", "--upstream", "--control", "--web"]
    attacker = st.tuples(
        options(pair("--set", hostile_text()), pair("--attack", names([*ATTACK_IDS, "none"]))),
        st.one_of(
            st.tuples(st.sampled_from(endpoint_flags), invalid_endpoints()).map(list),
            pair("--web-ports", positional(hostile_text()).filter(not_two_ports)),
            pair("--attack", positional(hostile_text()).filter(not_among([*ATTACK_IDS, "none"]))),
            st.sampled_from(["empty-dir", "missing.py"]).map(
                lambda name: ["--addon", str(lab.scratch / name)]
            ),
        ),
    ).map(lambda t: ["attacker", "--state-dir", str(lab.state.root), *t[0], *t[1]])
    forward = st.tuples(invalid_endpoints(), positional(hostile_text())).map(
        lambda t: ["forward", "--listen", t[0], t[1]]
    )
    role = st.tuples(
        names(["server", "attacker", "client"], positional(hostile_text())), invalid_endpoints()
    ).map(lambda t: ["role", t[0], "--control", t[1], "--state-dir", str(lab.state.root)])
    return [check, demo, probe, bench, serve, attacker, forward, role]


def quick_commands(lab: Lab) -> list[st.SearchStrategy[list[str]]]:
    """Commands that end at once whatever they are given."""
    show = mostly(st.just("report"), st.sampled_from(["empty-dir", "missing", "a-file", "a-file/under"])).map(
        lambda name: ["report", "show", str(lab.scratch / name)]
    )
    protections = options(st.just(["--markdown"]), hostile_text().map(lambda text: [text])).map(
        lambda extra: ["protections", *extra]
    )
    init = st.sampled_from(["a-file", "a-file/under"]).map(
        lambda name: ["init", "--state-dir", str(lab.scratch / name)]
    ) | st.just(["init", "--state-dir", str(lab.state.root)])  # there already: checked, nothing done
    return [show, show, show, protections, init]


def report_json() -> st.SearchStrategy[bytes]:
    """What a report.json may hold that no check wrote."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | hostile_text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text(), inner, max_size=3),
        max_leaves=8,
    )
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.dictionaries(st.sampled_from(["summary", "headline", "scenarios"]), json_values, max_size=3).map(
            lambda fields: json.dumps({"schema": "mitm-lab/report", **fields}).encode()
        ),
    )


HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(data=st.data())
@HYPOTHESIS
def test_hostile_arguments_to_the_roles_get_one_line_and_a_documented_exit(
    lab: Lab, data: st.DataObject
) -> None:
    args = data.draw(client_commands(lab) | server_commands(lab), label="args")
    one_clear_line_and_the_state_kept(lab, args)


@given(data=st.data())
@HYPOTHESIS
def test_hostile_arguments_to_every_other_command_get_one_line_and_a_documented_exit(
    lab: Lab, data: st.DataObject
) -> None:
    commands = [*poisoned_commands(lab), *quick_commands(lab)]
    args = data.draw(st.sampled_from(commands).flatmap(lambda command: command), label="args")
    (lab.scratch / "report" / "report.json").write_bytes(data.draw(report_json(), label="report.json"))
    one_clear_line_and_the_state_kept(lab, args)


def one_clear_line_and_the_state_kept(lab: Lab, args: list[str]) -> None:
    """`mitmlab ARGS` as the CLI runs: one clear line, a documented exit, and the state as it was."""
    before = state_files(lab.state)
    with at_most(60):
        result = CliRunner().invoke(cli, args)
    event(f"{args[0]} exit {result.exit_code}")  # --hypothesis-show-statistics: how often each ends how
    assert_one_clear_line(args, result.exit_code, result.exception, result.output)
    assert state_files(lab.state) == before


# The defects found by hand ------------------------------------------------------------------------------


def test_a_host_label_over_63_characters_is_a_usage_error(lab: Lab) -> None:
    host = "a" * 64 + ".lab"
    for args in (["client", "--connect", f"{host}:4433", "balance"], ["server", "--listen", f"{host}:0"]):
        result = mitmlab(*args, "--state-dir", str(lab.state.root))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "labels of 1 to 63" in result.stderr


def test_an_ipv6_address_goes_in_brackets_and_a_port_is_ascii_digits(lab: Lab) -> None:
    for connect in ("::1", "[::1:1", f"127.0.0.1:{ARABIC_ONE}", "[red]x:1"):
        result = CliRunner().invoke(
            cli, ["client", "--connect", connect, "--state-dir", str(lab.state.root), "balance"]
        )
        assert result.exit_code == 2 and "is not HOST:PORT" in result.output, result.output
    refused = CliRunner().invoke(
        cli, ["client", "--connect", f"[::1]:{lab.closed}", "--state-dir", str(lab.state.root), "balance"]
    )
    assert refused.exit_code == EXIT_CONNECTION, refused.output


@pytest.fixture
def odd_accounts(state: StateDir, tmp_path: Path) -> Iterator[int]:
    """A server whose bank has accounts named like rich markup, as the protocol allows."""
    with sqlite3.connect(state.ledger_path) as db:
        for name in ("[/x]", "[bold]eve"):
            db.execute("INSERT INTO accounts VALUES (?, x'00', x'00', 0)", (name,))
    with background(
        "server",
        "--listen",
        "127.0.0.1:0",
        "--web-ports",
        "0,0",
        "--state-dir",
        str(state.root),
        port_file=tmp_path / "port",
    ) as port:
        yield port


def test_recipients_written_like_markup_are_printed_as_typed(state: StateDir, odd_accounts: int) -> None:
    def transfer(to: str) -> tuple[int, str]:
        args = ("client", "--connect", f"127.0.0.1:{odd_accounts}", "--state-dir", str(state.root))
        result = mitmlab(*args, "transfer", "1", to)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout + result.stderr

    for to in ("[/x]", "[bold]eve"):
        code, out = transfer(to)
        assert code == 0 and f"done: 1 to {to};" in out, out
    code, out = transfer("[red]nobody")
    assert code == EXIT_BANK and "no account '[red]nobody'" in out, out
    executed = Ledger(state.ledger_path).transfers()
    assert [t.to_account for t in executed] == ["[/x]", "[bold]eve"]


def test_a_16_kb_recipient_is_refused_before_anything_is_sent(lab: Lab) -> None:
    evidence = lab.state.evidence_path("client")
    before = evidence.read_bytes() if evidence.exists() else b""
    args = ("client", "--connect", f"127.0.0.1:{lab.closed}", "--state-dir", str(lab.state.root))
    result = mitmlab(*args, "transfer", "1", "x" * 16384)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"an account name is 1 to {protocol.MAX_NAME} printable characters" in result.stderr
    assert len(result.stderr.splitlines()[-1]) < 200  # the name is cut in the message, not printed whole
    assert (evidence.read_bytes() if evidence.exists() else b"") == before  # not even dialled


@pytest.mark.parametrize(
    "request_",
    [
        b'{"op":"transfer","to":"' + b"x" * 65 + b'","amount":1}',
        b'{"op":"transfer","to":"","amount":1}',
        b'{"op":"transfer","to":"bob\\u001b[2J","amount":1}',
        b'{"op":"transfer","to":"\\ud800","amount":1}',
        b'{"op":"login","user":"' + b"a" * 8000 + b'","password":"x"}',
    ],
)
def test_the_bank_declines_a_name_no_account_can_have(state: StateDir, request_: bytes) -> None:
    """The server's side of the same limit: a reply that repeats a name always fits in one record."""
    session = BankSession(Ledger(state.ledger_path), "s")
    session.handle(protocol.login("alice", state.client_password()), 0)
    outcome = session.handle(request_, 1)
    assert outcome.transfer is None and "an account name is 1 to 64" in str(outcome.error)
    assert len(outcome.reply) < 200
    with pytest.raises(protocol.BankProtocolError):
        protocol.transfer("x" * 65, 1)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"not json{", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[]", "is not a mitm-lab report"),
        (b'{"summary": {}}', "is not a mitm-lab report"),
        (b'{"schema": "mitm-lab/report"}', "lacks what a report holds"),
        (None, "cannot read"),
    ],
)
def test_report_show_of_what_is_no_report_is_one_line(
    tmp_path: Path, content: bytes | None, said: str
) -> None:
    if content is None:
        (tmp_path / "report.json").mkdir()
    else:
        (tmp_path / "report.json").write_bytes(content)
    result = CliRunner().invoke(cli, ["report", "show", str(tmp_path)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == EXIT_SETUP, result.output
    assert result.output.startswith("mitmlab: ") and said in result.output and "report.json" in result.output


def test_report_show_prints_a_reports_own_text_as_it_is(tmp_path: Path) -> None:
    summary = {"runs": 1, "duration_s": 1.0, "compromised": 0, "blocked": 0, "unaffected": 0, "error": 1}
    scenario = {
        "verdict": "error",
        "id": "[/x]",
        "attack": "[bold]eve",
        "profile": "[red]p",
        "error": "[/x] died",
    }
    report = {
        "schema": "mitm-lab/report",
        "summary": summary,
        "headline": {},
        "clients": [],
        "views": [],
        "sections": {},
        "scenarios": [scenario],
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(cli, ["report", "show", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[/x] ([bold]eve, [red]p): [/x] died" in result.output


CRASHING_ADDONS = {
    "at_import.py": ("1/0\n", "ZeroDivisionError: division by zero"),
    "exits.py": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "in_load.py": (
        "class A:\n    def load(self, loader):\n        raise ValueError('[/x] no')\naddons = [A()]\n",
        "ValueError: [/x] no",
    ),
    "in_configure.py": (
        "class A:\n    def configure(self, updated):\n        {}['k']\naddons = [A()]\n",
        "KeyError: 'k'",
    ),
    "in_running.py": ("class A:\n    def running(self):\n        1/0\naddons = [A()]\n", "ZeroDivisionError"),
}


def test_a_crashing_addon_says_what_it_raised(state: StateDir, tmp_path: Path) -> None:
    for name, (source, _) in CRASHING_ADDONS.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "not_a_list.py").write_text("addons = 3\n")
    (tmp_path / "plain.py").write_text(
        "class Plain:\n    def running(self):\n        pass\naddons = [Plain()]\n"
    )

    async def scenario() -> None:
        attacker = AttackerRole(state, ("127.0.0.1", 0), ("127.0.0.1", 9))
        await attacker.start()
        try:
            for name, (_, raised) in CRASHING_ADDONS.items():
                with pytest.raises(AttackerError) as caught:
                    attacker.switch_to_file(tmp_path / name)
                assert str(caught.value).startswith(f"addon {name} failed to load: {raised}")
            with pytest.raises(AttackerError, match=r"addon not_a_list.py: addons is int, not a list"):
                attacker.switch_to_file(tmp_path / "not_a_list.py")
            attacker.switch_to_file(tmp_path / "plain.py")  # a plain mitmproxy addon: no lab_ options
            assert attacker.status()["attack"] == str(tmp_path / "plain.py")
            attacker.switch("bit-flip")  # and the lab's own attacks load after all of it
        finally:
            await attacker.stop()

    asyncio.run(scenario())


def test_the_attacker_command_names_an_addons_crash_in_one_line(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "crash.py").write_text("1/0\n")
    args = ("attacker", "--listen", "127.0.0.1:0", "--web-ports", "0,0", "--state-dir", str(lab.state.root))
    result = mitmlab(*args, "--addon", str(tmp_path / "crash.py"))
    assert result.returncode == EXIT_SETUP, result.stderr
    assert (
        result.stderr.strip() == "mitmlab: addon crash.py failed to load: ZeroDivisionError: division by zero"
    )
