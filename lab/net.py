"""Small network helpers that several parts of the lab share."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

CHUNK: Final = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until the end, then half-close `writer` (its peer sees the end too)."""
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def free_port(host: str = "127.0.0.1") -> int:
    """A port of `host` free a moment ago, for a program that cannot report the one it bound (sshd, a
    compose file's published port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def is_address(name: str) -> bool:
    """An IP address, not a name to look up."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class WebPorts:
    """The HTTPS bank's two ports (`lab.bank.web`): here, where the command line and every role read
    them without loading the bank's HTTP server."""

    https: int
    http: int

    def __str__(self) -> str:
        return f"{self.https},{self.http}"
