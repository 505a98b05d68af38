"""Every example in `mitmlab --help` and its commands' help works as written (issue 21).

The examples are collected from the help texts themselves (every command's help, epilog and option
help): the lines that start with `mitmlab `, and the `mitmlab ...` quoted in backticks. Each must parse
with the real command line, so a new example is checked without touching this file, and a misspelt
option or attack name fails here. Those that take seconds then run for real, as the help writes them,
through a shell in a fresh folder, as a user runs them, and must do what the help says they do; each
example is run here or named in PARSED_ONLY with the test that runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
import pytest

from lab.cli import cli
from lab.cli.errors import EXIT_REFUSED
from lab.net import WebPorts
from lab.stacks import attacks_on
from lab.stacks.real_tls import REAL_TLS
from tests.test_clients import expected

pytestmark = pytest.mark.loopback

REPO: Final = Path(__file__).resolve().parent.parent

PARSED_ONLY: Final = {
    # Every view of the check takes minutes: its parts run, with --out, in tests/test_check.py (the lab
    # channel's views) and tests/test_clients.py (the clients view). Here they are only parsed.
    "mitmlab check": "tests/test_check.py, tests/test_clients.py",
    "mitmlab check --view clients": "tests/test_clients.py",
    "mitmlab check --view all": "tests/test_check.py, tests/test_clients.py",
    # sshd needs root: run, as root, in tests/test_ssh_view.py.
    "mitmlab demo host-key-swap --client tofu": "tests/test_ssh_view.py",
    "mitmlab check --view ssh --no-capture": "tests/test_bench.py (`mitmlab bench ssh` runs it)",
}


@dataclass(frozen=True)
class Example:
    where: str
    """The command whose help shows it (`mitmlab probe`)."""
    line: str
    """As the help writes it, its description cut off (`mitmlab server &`)."""

    @property
    def commands(self) -> tuple[tuple[str, ...], ...]:
        """The line's commands as the shell splits them (`a & b` is two), each its words."""
        lexer = shlex.shlex(self.line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[tuple[str, ...]] = [()]
        for word in lexer:
            if set(word) <= set("&;|"):
                commands.append(())
            else:
                commands[-1] += (word,)
        return tuple(c for c in commands if c)


def examples_in(where: str, text: str) -> list[Example]:
    """The examples of one help text: lines that start with `mitmlab ` (an aligned description after
    two spaces or more cut off), and `mitmlab ...` in backticks. Any other `mitmlab ` in the text is
    an error: an example this test could not find, which nobody would check."""
    lines = [line.strip() for line in text.splitlines()]
    found = [re.split(r"\s{2,}", line)[0] for line in lines if line.startswith("mitmlab ")]
    found += re.findall(r"`(mitmlab [^`]*)`", text)
    mentioned = text.count("mitmlab ")
    if mentioned != sum(line.count("mitmlab ") for line in found):
        raise ValueError(
            f"{where}: an example neither on a line of its own nor in backticks, which this test cannot "
            f"find: {text!r}"
        )
    return [Example(where, line) for line in found]


def help_texts(command: click.Command, path: str) -> Iterator[tuple[str, str]]:
    """(command path, text) for the help, the epilog and every option's help of `command` and, for a
    group, of its commands, recursively."""
    for text in (command.help, command.epilog, *(getattr(p, "help", None) for p in command.params)):
        if text:
            yield path, text
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):  # `mitmlab`'s commands load when asked for
            sub = command.get_command(context, name)
            assert sub is not None, name
            yield from help_texts(sub, f"{path} {name}")


def all_examples() -> list[Example]:
    return [example for where, text in help_texts(cli, "mitmlab") for example in examples_in(where, text)]


def parse(words: tuple[str, ...] | list[str]) -> click.Context:
    """`words` (`mitmlab ...`) parsed as the real command line parses them, down to the command that
    would run, which does not run: its context, its parameters converted and checked. A wrong option,
    value or command raises click's UsageError (or BadParameter) with its message."""
    assert words[0] == "mitmlab", words
    command: click.Command = cli
    name, args, parent = "mitmlab", list(words[1:]), None
    while True:
        ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
        with ctx.scope(cleanup=False):
            rest = click.Command.parse_args(command, ctx, args)  # a group's own options; the rest after
        if not isinstance(command, click.Group):
            return ctx
        if not rest:
            raise click.UsageError("a command is missing", ctx)
        resolved, sub, args = command.resolve_command(ctx, rest)
        assert resolved is not None and sub is not None
        command, name, parent = sub, resolved, ctx


EXAMPLES: Final = all_examples()


def example(line: str) -> Example:
    """The help's example `line`, exactly as written there: if the help changes it, the test that runs
    it fails here rather than run something the help no longer says."""
    found = [e for e in EXAMPLES if e.line == line]
    assert found, f"no help shows {line!r} any more; its examples: {sorted({e.line for e in EXAMPLES})}"
    return found[0]


# Parsing: every example ----------------------------------------------------------------------------


def test_the_examples_are_found_in_every_help_text() -> None:
    where = {e.where for e in EXAMPLES}
    assert {"mitmlab", "mitmlab demo", "mitmlab probe"} <= where
    assert len(EXAMPLES) >= 15, EXAMPLES
    assert Example("mitmlab", "mitmlab server & mitmlab client balance").commands == (
        ("mitmlab", "server"),
        ("mitmlab", "client", "balance"),
    )
    with pytest.raises(ValueError, match="neither on a line of its own nor in backticks"):
        examples_in("mitmlab demo", "Narrated, e.g. mitmlab demo bit-flip --no-mac.")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.where}: {e.line}")
def test_every_example_parses_as_written(example: Example) -> None:
    for words in example.commands:
        try:
            parse(words)
        except click.ClickException as exc:
            pytest.fail(f"`{shlex.join(words)}`, in the help of `{example.where}`: {exc.format_message()}")


@pytest.mark.parametrize(
    "words",
    [
        "mitmlab demo bit-flap --no-mac",  # no such attack
        "mitmlab client --no-hostnam balance",  # no such option
        "mitmlab probe --attack bit-flip -- curl {url}",  # an attack of the lab channel, not of TLS
        "mitmlab client --connect 127.0.0.1 balance",  # no :PORT
        "mitmlab client",  # no command
        "mitmlab sever",
    ],
)
def test_a_wrong_example_does_not_parse(words: str) -> None:
    with pytest.raises(click.UsageError):
        parse(shlex.split(words))


def test_every_example_is_run_here_or_by_the_test_named() -> None:
    """A new example must be run (below) or say which test runs it: parsing alone misses an example
    that parses but fails, as `python3 my_client.py` did before the probe gave a file named here by its
    full path (COMMAND runs in a folder of its own)."""
    commands = {shlex.join(words) for e in EXAMPLES for words in e.commands}
    assert commands - RUN_HERE - set(PARSED_ONLY) == set()


# Running: as written, through a shell, in a fresh folder ------------------------------------------

ROLE_COMMANDS: Final = ("server", "client", "attacker")
ROLES: Final = (
    "mitmlab server &",
    "mitmlab client balance",
    "mitmlab attacker --attack wrong-host &",
    "mitmlab client --connect 127.0.0.1:4434 balance",
    "mitmlab client --connect 127.0.0.1:4434 --no-hostname transfer 100 bob",
)
"""The top-level help's roles, in its order (each line waits for the one before: its "then")."""
DEMOS: Final = (
    "mitmlab demo bit-flip --no-mac",
    "mitmlab demo key-compromise --no-forward-secrecy --server-with forward_secrecy",
)
PROBES: Final = (
    "mitmlab probe -- curl -sS --resolve {resolve} --cacert {cafile} {url}",
    "mitmlab probe -- python3 my_client.py {url} {address} {cafile}",
    "mitmlab probe --attack self-signed --attack wrong-host -- curl -sSk --resolve {resolve} {url}",
)
RUN_HERE: Final = {
    shlex.join(words) for line in (*ROLES, *DEMOS, *PROBES) for words in Example("", line).commands
}

MY_CLIENT: Final = '''\
"""A customer's script: opens the bank, finds the login form, logs in. It trusts the CA it is given."""
import http.cookiejar, os, socket, ssl, sys, urllib.parse, urllib.request
from html.parser import HTMLParser

url, address, cafile = sys.argv[1:4]
resolve = socket.getaddrinfo  # bank.lab means `address` here, as curl's --resolve makes it
socket.getaddrinfo = lambda host, *a, **k: resolve(address if host == "bank.lab" else host, *a, **k)


class Form(HTMLParser):
    action = None

    def handle_starttag(self, tag, attrs):
        if tag == "form" and self.action is None:
            self.action = dict(attrs).get("action") or ""


opener = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)),
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
)
try:
    with opener.open(url, timeout=10) as page:
        form = Form()
        form.feed(page.read().decode())
        action = urllib.parse.urljoin(page.geturl(), form.action)
    login = {"user": os.environ["MITMLAB_USER"], "password": os.environ["MITMLAB_PASSWORD"]}
    with opener.open(action, urllib.parse.urlencode(login).encode(), timeout=10) as landed:
        print(landed.read().decode())
except OSError as exc:  # the library's own words: "certificate verify failed: ...", "Hostname mismatch"
    sys.exit(f"{type(exc).__name__}: {exc}")
'''


def shell(line: str) -> list[str]:
    """`line` run by bash, as typed, `mitmlab` being this checkout's (`python -m lab`), which takes the
    shell's place (`exec`): the process started is the role's, which ends when it is ended."""
    return ["bash", "-c", f'mitmlab() {{ exec {shlex.quote(sys.executable)} -m lab "$@"; }}\n{line}']


def environment() -> dict[str, str]:
    """The user's environment, but the lab is this checkout and the state is ./state (the default)."""
    env = {k: v for k, v in os.environ.items() if k != "MITMLAB_STATE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run(line: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        shell(line), cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout, check=False
    )


def said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


@contextmanager
def in_background(line: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`line` (`mitmlab server &`) started as the shell would, its output to `log`; ended afterwards,
    its whole process group, whatever happens."""
    with log.open("w") as out:
        process = subprocess.Popen(
            shell(line.removesuffix("&")),
            cwd=cwd,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # what is left of its group, or all of it
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def ports_of(line: str) -> list[int]:
    """The TCP ports the role of `line` listens on, from its own defaults (parsed as it parses them)."""
    [words] = Example("", line).commands
    params = parse(words).params
    listen: tuple[str, int] = params["listen"]
    web: WebPorts = params["web_ports"]
    return [listen[1], web.https, web.http]


def taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the roles bind: TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_until_listening(line: str, process: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    """Until the role of `line` accepts on its --listen port: what its "listening" line says."""
    [words] = Example("", line).commands
    host, port = parse(words).params["listen"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`{line}` exited ({process.returncode}) before listening: {log.read_text()}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"`{line}` is not listening on {host}:{port} after {timeout} s: {log.read_text()}")


def wait_until_said(words: str, process: subprocess.Popen[str], log: Path, timeout: float = 30) -> None:
    """Until the role's `log` says `words`: the attacker tells what its attack did as it reads its own
    evidence file, a moment after the session it attacked may have ended."""
    deadline = time.monotonic() + timeout
    while words not in " ".join(log.read_text().split()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the role never said {words!r}: {log.read_text()}")
        time.sleep(0.05)


def test_the_roles_run_in_the_order_the_help_gives_them(tmp_path: Path) -> None:
    lines = [e.line for e in EXAMPLES if e.where == "mitmlab" and e.line.split()[1] in ROLE_COMMANDS]
    assert tuple(lines) == ROLES
    server, balance, attacker, refused, accepted = (example(line).line for line in ROLES)
    ports = [*ports_of(server), *ports_of(attacker)]
    busy = sorted(port for port in ports if taken(port))
    if busy:
        pytest.fail(
            f"127.0.0.1 port(s) {busy} taken: the help's `{server}` and `{attacker}` listen on the lab's "
            "default ports; stop what holds them (another mitmlab server or attacker?) and run again"
        )
    with ExitStack() as running:
        process = running.enter_context(in_background(server, tmp_path, tmp_path / "server.log"))
        wait_until_listening(server, process, tmp_path / "server.log")
        result = run(balance, tmp_path)
        assert result.returncode == 0 and "balance: 1000" in said(result), said(result)

        attacker_log = tmp_path / "attacker.log"
        process = running.enter_context(in_background(attacker, tmp_path, attacker_log))
        wait_until_listening(attacker, process, attacker_log)
        result = run(refused, tmp_path)
        assert result.returncode == EXIT_REFUSED, said(result)
        assert "REFUSED by hostname" in said(result) and "not for bank.lab" in said(result)
        result = run(accepted, tmp_path)
        assert result.returncode == 0 and "transfer #1 done: 100 to bob" in said(result), said(result)
        wait_until_said("READS the password", process, attacker_log)
    assert [port for port in ports if taken(port)] == [], "a role outlived its test"


def run_together(lines: tuple[str, ...], folders: list[Path]) -> list[subprocess.CompletedProcess[str]]:
    """Each of the help's `lines`, as written, in its own folder, at the same time (they wait mostly on
    their roles, so together they take little longer than the longest alone)."""
    written = [example(line).line for line in lines]
    with ThreadPoolExecutor(len(written)) as pool:
        return list(pool.map(lambda line, folder: run(line, folder, timeout=300), written, folders))


def test_the_demo_examples(tmp_path: Path) -> None:
    flipped, decrypted = run_together(DEMOS, [tmp_path / "bit-flip", tmp_path / "key-compromise"])
    assert flipped.returncode == 0, said(flipped)
    assert "CHANGES the transfer recipient: bob -> eve" in said(flipped)
    assert "EXECUTES transfer #1: alice -> eve 100" in said(flipped)
    assert "COMPROMISED: the server executed 100 to eve, which the client never sent" in said(flipped)
    assert decrypted.returncode == 0, said(decrypted)
    assert "suite RSA_" in said(decrypted)  # the client offered no ephemeral key exchange
    assert "COMPROMISED: the attacker read" in said(decrypted) and "(decrypted offline)" in said(decrypted)


def cells(folder: Path) -> dict[str, tuple[str, str | None]]:
    """The one report a probe wrote in `folder` (reports/<timestamp>/): attack -> verdict, protection."""
    [report] = (folder / "reports").glob("*/report.json")
    data: dict[str, Any] = json.loads(report.read_text())
    return {cell["attack"]: (cell["verdict"], cell["protection"]) for cell in data["clients"]}


@pytest.mark.system  # the real clients: curl, and Python against every TLS attack
def test_the_probe_examples(tmp_path: Path) -> None:
    """As tests/test_clients.py expects of curl, of Python's urllib (which my_client.py is: it verifies
    against the lab CA and checks no CRL) and of curl -k."""
    folders = [tmp_path / name for name in ("curl", "script", "careless")]
    folders[1].mkdir()
    (folders[1] / "my_client.py").write_text(MY_CLIENT)
    results = run_together(PROBES, folders)
    for result in results:
        assert result.returncode == 0 and "0 errors" in said(result), said(result)
    every = ("none", *attacks_on(REAL_TLS))
    assert cells(folders[0]) == {attack: expected(attack, "curl") for attack in every}
    assert cells(folders[1]) == {attack: expected(attack, "python-urllib") for attack in every}
    assert cells(folders[2]) == {a: expected(a, "curl-k") for a in ("none", "self-signed", "wrong-host")}
