"""The state directory against mistakes, other local users and hostile bytes: a folder with a part missing
or damaged is refused (exit 7, one line naming the part and `mitmlab init --fresh`), never rebuilt over the
ledger; `--fresh` deletes only what the lab made, in a folder that is the lab's, through no symlink; an
empty path is refused; and no other user can read the state's secrets."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab.bank.ledger import Ledger
from lab.channel.pins import KnownHosts
from lab.cli import cli
from lab.state import MARKER, StateDir, StateError
from tests.processes import background, free_port, mitmlab

pytestmark = pytest.mark.loopback

CHECKOUT = Path(__file__).resolve().parent.parent
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
A_PIN = b"bank.lab SHA256:" + b"ab" * 32 + b"\n"
HOSTILE_TARGETS = (
    "pki/server/bank.lab.key.pem",
    "pki/ca.key.pem",
    "pki/ca.crt.pem",
    "pki/ca.crl.pem",
    "client/accounts.json",
    "client/known_hosts",
    "control.secret",
)


def mitmlab_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mitmlab ARGS` run from `cwd`, as a user in that folder would."""
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (symlinks as their target's name), by relative path."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            files[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def test_a_state_missing_its_crl_is_refused_and_the_ledger_kept(state: StateDir, tmp_path: Path) -> None:
    where = ("--state-dir", str(state.root))
    with background(
        "server", "--listen", "127.0.0.1:0", "--web-ports", "0,0", *where, port_file=tmp_path / "port"
    ) as port:
        paid = mitmlab("client", "--connect", f"127.0.0.1:{port}", *where, "transfer", "7", "bob")
        assert paid.returncode == 0, paid.stderr
    ledger, password = state.ledger_path.read_bytes(), state.client_password()
    state.ca_crl.unlink()

    server = mitmlab("server", "--listen", "127.0.0.1:0", "--web-ports", "0,0", *where)
    client = mitmlab("client", "--connect", "127.0.0.1:1", *where, "balance")
    for refused in (server, client):
        assert refused.returncode == 7, refused.stdout + refused.stderr
        assert "ca.crl.pem is missing" in refused.stderr and "Traceback" not in refused.stderr
        assert f"mitmlab init --fresh --state-dir {state.root}" in refused.stderr
    with pytest.raises(StateError, match=r"ca\.crl\.pem is missing"):
        state.ensure()
    assert state.ledger_path.read_bytes() == ledger and not state.ca_crl.exists()
    assert state.client_password() == password
    books = Ledger(state.ledger_path)
    assert [(t.to_account, t.amount) for t in books.transfers()] == [("bob", 7)]
    books.close()


def test_an_empty_state_dir_is_refused_and_nothing_deleted(state_template: StateDir, tmp_path: Path) -> None:
    """The current directory is a lab state here (the worst case): '' must not mean it."""
    here = tmp_path / "here"
    shutil.copytree(state_template.root, here)
    (here / "homework.txt").write_text("mine")
    before = snapshot(here)
    flag = mitmlab_in(here, "init", "--fresh", "--state-dir", "")
    environment = mitmlab_in(here, "init", "--fresh", env={"MITMLAB_STATE_DIR": ""})
    served = mitmlab_in(here, "server", "--state-dir", "", "--listen", "127.0.0.1:0")
    for refused in (flag, environment, served):
        assert refused.returncode == 2 and "Invalid value for '--state-dir'" in refused.stderr, refused.stderr
    assert "MITMLAB_STATE_DIR is empty" in environment.stderr
    assert snapshot(here) == before


def test_fresh_clears_what_the_lab_made_and_keeps_the_rest(state: StateDir) -> None:
    (state.root / "notes.txt").write_text("my notes")
    (state.root / "mine").mkdir()
    (state.root / "mine" / "draft.md").write_text("a draft")
    secret = state.secret()
    fresh = mitmlab("init", "--fresh", "--state-dir", str(state.root))
    assert fresh.returncode == 0, fresh.stderr
    assert "Kept what the lab did not make there: mine, notes.txt." in " ".join(fresh.stdout.split())
    assert (state.root / "notes.txt").read_text() == "my notes"
    assert (state.root / "mine" / "draft.md").read_text() == "a draft"
    assert state.secret() != secret and state.exists() and (state.root / MARKER).is_file()


def test_fresh_refuses_a_folder_that_is_not_a_lab_state(tmp_path: Path) -> None:
    """An easy-rsa-like project: a pki/ with a CA certificate, a server/ and a client/, and no mark."""
    project = tmp_path / "project"
    for name, text in {
        "pki/ca.crt.pem": "a CA of my own",
        "server/app.py": "print()",
        "client/index.html": "<p>",
        "notes.txt": "mine",
    }.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    before = snapshot(project)
    fresh = mitmlab("init", "--fresh", "--state-dir", str(project))
    served = mitmlab("server", "--listen", "127.0.0.1:0", "--state-dir", str(project))
    for refused in (fresh, served):
        assert refused.returncode == 7 and "not a lab state directory" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert snapshot(project) == before


def test_an_older_state_without_the_mark_is_still_the_labs(state: StateDir) -> None:
    (state.root / MARKER).unlink()
    assert state.require() is state  # usable as it is
    fresh = mitmlab("init", "--fresh", "--state-dir", str(state.root))
    assert fresh.returncode == 0, fresh.stderr
    assert (state.root / MARKER).read_text() == "mitm-lab state 1\n"


def test_fresh_never_follows_a_symlink(state: StateDir, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "precious.txt").write_text("precious")
    (outside / "file.txt").write_text("also precious")
    shutil.rmtree(state.root / "attacker")
    (state.root / "attacker").symlink_to(outside / "dir")  # a lab entry that is a symlink
    (state.root / "evidence" / "escape").symlink_to(outside)  # a symlink inside a lab directory
    (state.root / "pki" / "key-link").symlink_to(outside / "file.txt")
    before = snapshot(outside)
    fresh = mitmlab("init", "--fresh", "--state-dir", str(state.root))
    assert fresh.returncode == 0, fresh.stderr
    assert snapshot(outside) == before
    assert not (state.root / "attacker").is_symlink() and not (state.root / "evidence" / "escape").exists()


def not_private(root: Path) -> list[str]:
    """What under `root` others could enter or read: a directory not 0700, a file not 0600."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode != (0o700 if path.is_dir() else 0o600):
            found.append(f"{path} {mode:o}")
    return found


def test_the_state_is_its_owners_alone(open_scratch: Path) -> None:
    root = open_scratch / "state"
    made = mitmlab("init", "--state-dir", str(root))
    assert made.returncode == 0, made.stderr
    assert not_private(root) == []
    state = StateDir(root)
    state.ledger_path.unlink()
    state.reset()  # the ledger made again from its template
    KnownHosts(state.known_hosts).check("bank.lab", "SHA256:ab")
    refused = mitmlab("client", "--connect", f"127.0.0.1:{free_port()}", "--state-dir", str(root), "balance")
    assert refused.returncode == 5 and state.evidence_path("client").exists()  # what the client saw
    assert not_private(root) == []

    if os.geteuid() != 0:
        pytest.skip("reading as another user needs root, to become nobody")
    public = open_scratch / "public.txt"
    public.write_text("anyone may read this")
    public.chmod(0o644)
    secrets = [state.accounts, state.ledger_path, state.ledger_template, state.evidence_path("client")]
    secrets += [state.control_secret, state.server_key, state.known_hosts]
    for path in [public, *secrets]:
        read = subprocess.run(
            [*NOBODY, "/usr/bin/python3", "-c", "import sys; open(sys.argv[1], 'rb').read()", str(path)],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if path == public:  # the user nobody reaches the scratch folder: the test can see a leak
            assert read.returncode == 0, read.stderr
        else:
            assert read.returncode == 1 and "PermissionError" in read.stderr, (path, read.stderr)


def test_init_makes_an_older_state_private(state: StateDir, tmp_path: Path) -> None:
    """As the lab made them before: 0755 directories, 0644 files; what a symlink points to is not the
    lab's, and keeps its mode."""
    for path in [state.root, *state.root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tmp_path / "outside").mkdir(mode=0o755)
    (tmp_path / "outside" / "shared.txt").write_text("for everyone")
    (tmp_path / "outside" / "shared.txt").chmod(0o644)
    (state.root / "evidence" / "link").symlink_to(tmp_path / "outside" / "shared.txt")
    (state.root / "attacker" / "folder").symlink_to(tmp_path / "outside")
    assert len(not_private(state.root)) > 20
    again = mitmlab("init", "--state-dir", str(state.root))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    assert not_private(state.root) == []
    assert stat.S_IMODE((tmp_path / "outside").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "outside" / "shared.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_a_garbage_state_file_is_one_line_naming_it(state: StateDir, target: str) -> None:
    """Through the CLI in this process, as the real one runs it (click's standalone mode): the real
    process meets a damaged state in test_a_state_missing_its_crl_is_refused_and_the_ledger_kept."""
    (state.root / target).write_bytes(b"\xff garbage\n" if target == "control.secret" else b"garbage\n")
    ledger = state.ledger_path.read_bytes()
    args = ["client", "--connect", "127.0.0.1:1", "--state-dir", str(state.root), "balance"]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 7, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{state.root / target} does not hold" in result.stderr and "mitmlab init --fresh" in result.stderr
    assert state.ledger_path.read_bytes() == ledger


def hostile(original: bytes) -> st.SearchStrategy[bytes]:
    """Bytes that are not what the lab wrote: random, cut short, or with a stretch overwritten."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    )
    return st.one_of(
        st.binary(max_size=600),
        st.integers(0, len(original)).map(lambda end: original[:end]),
        st.tuples(st.integers(0, len(original)), st.binary(min_size=1, max_size=40)).map(
            lambda cut: original[: cut[0]] + cut[1] + original[cut[0] + len(cut[1]) :]
        ),
        json_values.map(lambda value: repr(value).encode()),
        st.text(max_size=80).map(str.encode),
    )


@given(data=st.data())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_bytes_in_any_state_file_never_give_a_traceback(state: StateDir, data: st.DataObject) -> None:
    """Through the CLI as it runs (click's standalone mode): the server (which would make a state where
    there is none) and the client, each stopped by a port that does not answer once the state loads."""
    target = data.draw(st.sampled_from(HOSTILE_TARGETS), label="file")
    path = state.root / target
    original = path.read_bytes() if path.exists() else A_PIN
    before = {name: body for name, body in snapshot(state.root).items() if not name.startswith("evidence/")}
    path.write_bytes(data.draw(hostile(original), label="bytes"))
    try:
        with socket.create_server(("127.0.0.1", 0)) as busy:
            taken, closed = f"127.0.0.1:{busy.getsockname()[1]}", free_port()
            runs = (
                ["server", "--state-dir", str(state.root), "--listen", taken, "--web-ports", "0,0"],
                ["client", "--state-dir", str(state.root), "--connect", f"127.0.0.1:{closed}", "balance"],
            )
            results = [CliRunner().invoke(cli, args) for args in runs]
    finally:
        if path.name == "known_hosts":
            path.unlink()
        else:
            path.write_bytes(original)
    for (command, *_), result in zip(runs, results, strict=True):
        event(f"{command} exit {result.exit_code}")  # --hypothesis-show-statistics: how often each ends how
        assert isinstance(result.exception, SystemExit) and result.exit_code in (5, 7), result.output
        assert "Traceback" not in result.output
        if result.exit_code == 7:
            assert path.name in result.output and "mitmlab init --fresh" in result.output, result.output
    after = {name: body for name, body in snapshot(state.root).items() if not name.startswith("evidence/")}
    assert after == before  # nothing made again: the ledger, the keys and the password as they were


def test_state_with_nothing_of_the_labs_is_made_where_asked(tmp_path: Path) -> None:
    """A folder holding only things the lab did not make gets the lab's state beside them; its own mode
    stays (it may be a folder the lab shares, such as /tmp)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "lost+found").mkdir()
    state = StateDir(shared).ensure(datetime.datetime.now(datetime.UTC))
    assert state.exists() and (shared / "lost+found").is_dir()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "server").stat().st_mode) == 0o700
