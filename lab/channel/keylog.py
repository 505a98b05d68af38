"""The lab key log: the keys of each lab-channel session, one line per session and side, so that a
capture of the session can be read after the fact (docs/wireshark.md). It is NSS's key log idea
(SSLKEYLOGFILE, which Wireshark reads for TLS), for the lab's own channel, whose keys no TLS tool
derives:

    LAB_SESSION_KEYS <side> <client random> <server random> <client write key> <client MAC key>
                     <server write key> <server MAC key>

all hex, on one line; `side` is the role that logged it (`client` or `server`). Where the attacker only
relays, both sides log the same keys; where it runs a handshake with each (pubkey-swap), the client's
line holds the keys of the client's leg and the server's those of the server's leg."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lab.channel.connection import HandshakeComplete
from lab.channel.keys import DirectionKeys

LABEL: Final = "LAB_SESSION_KEYS"
SIDES: Final = ("client", "server")


class KeyLogError(ValueError):
    """A line of a lab key log that is not one."""


@dataclass(frozen=True)
class LoggedKeys:
    side: str
    client_random: bytes
    server_random: bytes
    client_write: DirectionKeys
    server_write: DirectionKeys


def keylog_line(side: str, session: HandshakeComplete) -> str:
    keys = session.keys
    fields = (
        session.client_random,
        session.server_random,
        keys.client_write.enc_key,
        keys.client_write.mac_key,
        keys.server_write.enc_key,
        keys.server_write.mac_key,
    )
    return " ".join([LABEL, side, *(field.hex() for field in fields)]) + "\n"


def parse_keylog(text: str) -> list[LoggedKeys]:
    """Every session's keys in `text`; blank lines and `#` comments are skipped."""
    logged = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 8 or words[0] != LABEL or words[1] not in SIDES:
            raise KeyLogError(f"line {number}: not `{LABEL} client|server` and six hex fields")
        try:
            client_random, server_random, c_enc, c_mac, s_enc, s_mac = map(bytes.fromhex, words[2:])
        except ValueError:
            raise KeyLogError(f"line {number}: a field is not hex") from None
        logged.append(
            LoggedKeys(
                words[1],
                client_random,
                server_random,
                DirectionKeys(c_enc, c_mac),
                DirectionKeys(s_enc, s_mac),
            )
        )
    return logged
