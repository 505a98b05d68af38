"""The ready file of `mitmlab role --ready-file`: how whoever starts a role learns that it listens, and
on which ports, without sleeping or guessing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

NOT_SERVICES: Final = ("control", "transparent")
"""What a ready file holds besides the role's services (each by name, with its port): the control
port, and the attacker's transparent listener (where ARP positioning redirects the server's ports)."""


class NotReady(Exception):
    """The role exited before it was ready, or was not ready in time; the message says which."""


async def wait_until_ready(ready: Path, process: asyncio.subprocess.Process, timeout: float) -> str:
    """The ready file's text, once `process` has written it."""
    try:
        async with asyncio.timeout(timeout):
            while not ready.exists() or not (text := ready.read_text().strip()):
                if process.returncode is not None:
                    raise NotReady(f"exited at start (exit code {process.returncode})")
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise NotReady(f"did not start within {timeout:g} s") from None
    return text
