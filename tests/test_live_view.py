"""mitmweb's live view (`--web`) for the lab's owner only: another local user without the token is
refused everything; the owner, with it, still cannot make the attacker run a file, write one or listen
elsewhere; the view is refused beyond loopback unless the compose lab asks for it, token and all."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.mitm import live_view
from lab.state import StateDir
from tests.processes import free_port, mitmlab

pytestmark = pytest.mark.loopback

HOSTILE = r"""
import json, sys, urllib.error, urllib.request
base, payload, token = sys.argv[1:]
# mitmweb's XSRF check only compares a cookie with a header, both of the caller's choosing
forged = {"Cookie": "_xsrf=6c6162", "X-XSRFToken": "6c6162", "Content-Type": "application/json"}
def status(method, path, body=None, headers={}):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data, {**forged, **headers}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code
upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
print(json.dumps({
    "GET /": status("GET", "/"),
    "GET /options": status("GET", "/options"),
    "GET /flows": status("GET", "/flows"),
    "GET /updates": status("GET", "/updates", headers=upgrade),
    "PUT /options scripts": status("PUT", "/options", {"scripts": [payload]}),
    "PUT /options save_stream_file": status("PUT", "/options", {"save_stream_file": payload + ".flows"}),
    "POST /commands/set": status("POST", "/commands/set", {"arguments": ["scripts", payload]}),
    "POST /commands/script.run": status("POST", "/commands/script.run", {"arguments": ["@all", payload]}),
    "a wrong bearer token": status("PUT", "/options", {"scripts": [payload]},
                                   {"Authorization": "Bearer " + token[::-1]}),
    "a wrong URL token": status("GET", "/?token=" + token[::-1]),
}))
"""
"""What another local user tries, with the Python of the system (the checkout may be closed to them)."""


@dataclass
class View:
    port: int
    state: StateDir
    console: str
    payload: Path
    """A Python file that would leave `ran` beside it, were the attacker to run it."""

    @property
    def ran(self) -> Path:
        return self.payload.with_name("ran")

    @property
    def token(self) -> str:
        return live_view.token(self.state.secret())


@pytest.fixture(scope="module")
def view(state_template: StateDir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[View]:
    """`mitmlab attacker --web 127.0.0.1:PORT`, as its owner starts it; a scratch folder under /tmp that
    any user may write (another user's payload, and where it would leave its mark)."""
    here = tmp_path_factory.mktemp("live-view")
    state = StateDir(here / "state")
    shutil.copytree(state_template.root, state.root)
    scratch = Path(tempfile.mkdtemp(prefix="mitmlab-live-view-"))
    scratch.chmod(0o777)
    payload = scratch / "payload.py"
    payload.write_text(f"open({str(scratch / 'ran')!r}, 'w').write('ran')\n")
    payload.chmod(0o644)
    port, console = free_port(), here / "console"
    attacker = ["attacker", "--listen", "127.0.0.1:0", "--web-ports", "0,0", "--web", f"127.0.0.1:{port}"]
    try:
        with running(
            *attacker, "--state-dir", str(state.root), "--port-file", str(here / "port"), console=console
        ):
            yield View(port, state, console.read_text(), payload)
    finally:
        shutil.rmtree(scratch)


@contextmanager
def running(*args: str, console: Path) -> Iterator[None]:
    """`mitmlab ARGS`, its output in `console`, until the file its last argument names exists (a port file
    or a ready file, written once it listens)."""
    ready = Path(args[-1])
    with console.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "lab", *args], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), console.read_text()
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else json.dumps(body)
        connection.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read().decode()
    finally:
        connection.close()


def owner(view: View, **headers: str) -> dict[str, str]:
    """The owner's request headers: the token, and an XSRF pair, as the view's page sends."""
    xsrf = {"Cookie": "_xsrf=6c6162", "X-XSRFToken": "6c6162"}
    return {"Authorization": f"Bearer {view.token}", **xsrf, **headers}


def as_another_user(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`/usr/bin/python3 ARGS` as nobody where the tests run as root (CI), else as is."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*drop, "/usr/bin/python3", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_another_user_without_the_token_is_refused_everything(view: View) -> None:
    base = f"http://127.0.0.1:{view.port}"
    hostile = as_another_user("-c", HOSTILE, base, str(view.payload), view.token, cwd=view.payload.parent)
    assert hostile.returncode == 0, hostile.stderr
    statuses = json.loads(hostile.stdout)
    assert statuses == dict.fromkeys(statuses, 401)
    assert not view.ran.exists()
    options = json.loads(call(view.port, "GET", "/options", headers=owner(view))[2])
    assert options["scripts"]["value"] == [] and options["save_stream_file"]["value"] is None


def test_the_owner_opens_the_view_with_the_printed_url_and_a_cookie(view: View) -> None:
    printed = re.search(r"live view.*: (http://\S+)", view.console)
    assert printed is not None, view.console
    assert printed[1] == f"http://127.0.0.1:{view.port}/?token={view.token}"
    assert view.token != view.state.secret() and len(view.token) == 64

    status, headers, _ = call(view.port, "GET", f"/?token={view.token}")
    assert (status, headers["Location"]) == (302, "/")  # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and view.token in cookie
    name_value = cookie.split(";")[0]
    status, headers, page = call(view.port, "GET", "/", headers={"Cookie": name_value})
    assert status == 200 and "mitmproxy" in page and "_xsrf" in headers["Set-Cookie"]
    assert call(view.port, "GET", "/flows", headers={"Cookie": "mitmlab_live_x=" + view.token})[0] == 401


def test_the_owner_cannot_change_what_the_attacker_runs_writes_or_where_it_listens(view: View) -> None:
    stream = view.payload.with_name("stream.flows")
    for change in (
        {"scripts": [str(view.payload)]},
        {"save_stream_file": str(stream)},
        {"mode": [f"regular@0.0.0.0:{free_port()}"]},
        {"confdir": str(view.payload.parent)},
        {"web_port": free_port()},
        {"intercept": "~q", "scripts": [str(view.payload)]},  # one refused option refuses the change
    ):
        status, _, why = call(view.port, "PUT", "/options", change, owner(view))
        assert status == 400 and "does not change" in why, (change, status, why)
    for command in ("set", "script.run", "save.file", "export.file", "options.save", "replay.client"):
        status, _, why = call(view.port, "POST", f"/commands/{command}", {"arguments": []}, owner(view))
        assert status == 403 and f"command {command}" in why
    for path in ("/flows/dump", "/options/save", "/flows/0123abcd/replay", "/flows/0123abcd/duplicate"):
        assert call(view.port, "POST", path, {}, owner(view))[0] == 403, path
    options = json.loads(call(view.port, "GET", "/options", headers=owner(view))[2])
    assert options["scripts"]["value"] == [] and options["intercept"]["value"] is None
    assert not view.ran.exists() and not stream.exists()


def test_the_owner_intercepts_and_exports_from_the_view(view: View) -> None:
    try:
        assert call(view.port, "PUT", "/options", {"intercept": "~q"}, owner(view))[0] == 200
        options = json.loads(call(view.port, "GET", "/options", headers=owner(view))[2])
        assert options["intercept"]["value"] == "~q"
        status, _, formats = call(
            view.port, "POST", "/commands/export.formats", {"arguments": []}, owner(view)
        )
        assert status == 200 and "curl" in json.loads(formats)["value"]
        # a page of another origin (another port of 127.0.0.1 shares the cookie) changes nothing
        elsewhere = owner(view, Origin=f"http://127.0.0.1:{free_port()}")
        assert call(view.port, "PUT", "/options", {"intercept": None}, elsewhere)[0] == 403
    finally:
        assert call(view.port, "PUT", "/options", {"intercept": None}, owner(view))[0] == 200


@pytest.mark.parametrize("command", ["attacker", "role"])
def test_a_live_view_beyond_loopback_is_refused_in_one_line(state: StateDir, command: str) -> None:
    role = ["role", "attacker"] if command == "role" else ["attacker"]
    result = mitmlab(*role, "--web", f"0.0.0.0:{free_port()}", "--state-dir", str(state.root))
    assert result.returncode == 7, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "loopback only" in result.stderr and "0.0.0.0" in result.stderr


def test_the_compose_lab_exposes_the_view_to_its_own_network_token_and_all(
    state: StateDir, tmp_path: Path
) -> None:
    """As docker-compose.yml runs it: lanes, the first lane's view on every address, with --web-exposed
    (which the lane's role must inherit, or it refuses to start)."""
    port, console = free_port(), tmp_path / "console"
    lanes = ["role", "attacker", "--lanes", "1", "--lanes-dir", str(tmp_path / "lanes")]
    ports = [
        "--control",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--web",
        f"0.0.0.0:{port}",
        "--web-exposed",
    ]
    with running(
        *lanes,
        *ports,
        "--state-dir",
        str(state.root),
        "--ready-file",
        str(tmp_path / "ready"),
        console=console,
    ):
        token = live_view.token(state.secret())
        assert f"http://0.0.0.0:{port}/?token={token}" in console.read_text()
        assert call(port, "GET", "/flows")[0] == 401
        assert call(port, "GET", "/flows", headers={"Authorization": f"Bearer {token}"})[0] == 200
