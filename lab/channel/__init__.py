"""The lab channel: the seeds' HTTPS-style handshake and record layer, with every protection a switch.

Sans-IO: bytes in, events and bytes out; no socket or asyncio import anywhere in this package. The
one file it reads and writes is the client's known_hosts (`pins`), as OpenSSH's client does its own.
"""

from lab.channel.connection import (
    ApplicationData,
    ClientConfig,
    ClientConnection,
    HandshakeComplete,
    ServerConfig,
    ServerConnection,
    VerifiedIdentity,
)
from lab.channel.errors import ChannelError, LocalProtocolError, PeerRefused, Refusal, RemoteProtocolError
from lab.channel.protections import NONE, PROFILES, PROTECTION_IDS, RECOMMENDED, Protections
from lab.channel.suites import Suite

__all__ = [
    "NONE",
    "PROFILES",
    "PROTECTION_IDS",
    "RECOMMENDED",
    "ApplicationData",
    "ChannelError",
    "ClientConfig",
    "ClientConnection",
    "HandshakeComplete",
    "LocalProtocolError",
    "PeerRefused",
    "Protections",
    "Refusal",
    "RemoteProtocolError",
    "ServerConfig",
    "ServerConnection",
    "Suite",
    "VerifiedIdentity",
]
