"""Turning what goes wrong into one clear line on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from lab.channel.errors import ChannelError, PeerRefused, Refusal
from lab.channel.protections import UnknownProtectionError
from lab.checker.backends import BackendError
from lab.roles.client import BankRefused, NoReply, ReplyUnreadable
from lab.state import StateError

EXIT_REFUSED = 3
EXIT_PEER_REFUSED = 4
EXIT_CONNECTION = 5
EXIT_BANK = 6
EXIT_SETUP = 7
EXIT_REPLY_UNREADABLE = 9

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 2 usage error; 3 a protection on this side refused (the message names it and
the step); 4 the peer refused; 5 connection or protocol failure; 6 the bank declined the request;
7 the state directory is missing or unusable; 9 a reply arrived but held no bank message (it
decrypted to bytes the bank never sent)."""

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(code: int, message: str | Text) -> NoReturn:
    """Print `message` after a red "mitmlab:" and exit with `code`. A str is printed as it is, never
    read as rich markup: messages carry paths, host names and recipients the user typed."""
    stderr.print(Text.assemble(("mitmlab:", "bold red"), " ", message))
    sys.exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except Refusal as exc:
        refused = Text.assemble(
            "REFUSED by ", (exc.protection, "bold"), " at step ", (exc.step, "bold"), f": {exc.message}"
        )
        fail(EXIT_REFUSED, refused)
    except PeerRefused as exc:
        fail(EXIT_PEER_REFUSED, str(exc))
    except ChannelError as exc:
        fail(EXIT_CONNECTION, str(exc))
    except (BankRefused, NoReply) as exc:
        fail(EXIT_BANK, str(exc))
    except ReplyUnreadable as exc:
        fail(EXIT_REPLY_UNREADABLE, str(exc))
    except (StateError, UnknownProtectionError) as exc:
        fail(EXIT_SETUP, str(exc))
    except BackendError as exc:
        fail(EXIT_SETUP, f"the roles could not start: {exc}")
    except ConnectionRefusedError:
        fail(EXIT_CONNECTION, "connection refused: is the server (or attacker) running at that address?")
    except TimeoutError:
        fail(EXIT_CONNECTION, "timed out connecting")
    except OSError as exc:
        fail(EXIT_CONNECTION, f"{exc.strerror or exc}")
