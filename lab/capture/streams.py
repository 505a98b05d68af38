"""A capture read back: its TCP connections put together again, and what they carried cut into the
messages a reader knows, the lab channel's frames (lab.channel.frames), TLS's records, SSH's
identification strings and packets (RFC 4253) or plain HTTP's requests and responses (sslstrip keeps
a victim on plain HTTP). The sequence
diagrams (lab.capture.diagram) are drawn from them. Nothing in a capture is trusted: bytes that are not
what they claim end the messages of their direction, with the reason, and never raise."""

from __future__ import annotations

import bisect
import itertools
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from lab.capture import ETHERTYPE_ARP, ETHERTYPE_IPV4, Frame
from lab.channel.errors import ChannelError
from lab.channel.frames import HEADER, MAX_BODY, FrameType
from lab.channel.frames import Frame as LabFrame
from lab.channel.messages import ClientHello, decode_handshake

Address = tuple[str, int]

TLS_RECORD: Final = struct.Struct("!BHH")
TLS_TYPES: Final = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
TLS_HANDSHAKES: Final = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    22: "CertificateStatus",
}
"""The handshake messages TLS 1.2 sends in the clear (TLS 1.3 encrypts all but the two hellos)."""
TLS_MAX_RECORD: Final = 2**14 + 2048
SSH_IDENTIFICATION: Final = re.compile(rb"SSH-([0-9.]{1,8})-[\x21-\x7e]{1,250}( [\x20-\x7e]{0,250})?\r?\n")
"""An SSH identification string (RFC 4253 §4.2): printable ASCII, ended by CR LF (or LF, which
OpenSSH accepts)."""
SSH_MAX_IDENTIFICATION: Final = 255
SSH_SHOWN: Final = 48
"""How much of an identification string its label shows."""
SSH_PACKET: Final = struct.Struct("!IB")
"""A binary packet's packet_length and padding_length (RFC 4253 §6)."""
SSH_MAX_PACKET: Final = 256 * 1024
"""OpenSSH's largest packet (PACKET_MAX_SIZE): a longer one is taken for no SSH at all."""
SSH_BLOCK: Final = 8
"""Before the first NEWKEYS (no cipher yet) a packet, its length field included, is a multiple of
8 bytes, with at least 4 bytes of padding."""
SSH_KEXINIT: Final = 20
SSH_NEWKEYS: Final = 21
SSH_MESSAGES: Final = {
    1: "DISCONNECT",
    2: "IGNORE",
    3: "UNIMPLEMENTED",
    4: "DEBUG",
    5: "SERVICE_REQUEST",
    6: "SERVICE_ACCEPT",
    7: "EXT_INFO",
    SSH_KEXINIT: "KEXINIT",
    SSH_NEWKEYS: "NEWKEYS",
}
"""The messages SSH can send in the clear whatever the key exchange (after NEWKEYS all is encrypted)."""
SSH_KEX_MESSAGES: Final = (
    (
        ("diffie-hellman-group-exchange-",),
        {
            30: "KEX_DH_GEX_REQUEST_OLD",
            31: "KEX_DH_GEX_GROUP",
            32: "KEX_DH_GEX_INIT",
            33: "KEX_DH_GEX_REPLY",
            34: "KEX_DH_GEX_REQUEST",
        },
    ),
    (("diffie-hellman-group",), {30: "KEXDH_INIT", 31: "KEXDH_REPLY"}),
    (
        (
            "curve25519-",
            "curve448-",
            "ecdh-sha2-",
            "sntrup761x25519-",
            "mlkem768x25519-",
        ),
        {30: "KEX_ECDH_INIT", 31: "KEX_ECDH_REPLY"},
    ),
)
"""Messages 30 to 49 mean what the agreed key exchange method says (RFC 4253 §12): by the method's
name, these. The hybrid post-quantum methods use ECDH's two messages, as OpenSSH names them."""
SSH_KEX_REPLIES: Final = frozenset({"KEXDH_REPLY", "KEX_ECDH_REPLY", "KEX_DH_GEX_REPLY"})
"""The server's key exchange replies: each carries its host key (or certificate) first, and signs."""
SEQ_SPACE: Final = 2**32
ETHERNET: Final = struct.Struct("!6s6sH")
ARP_IPV4: Final = struct.Struct("!HHBBH6s4s6s4s")
ARP_FOR_IPV4_OVER_ETHERNET: Final = (1, 0x0800, 6, 4)
"""An ARP packet's hardware and protocol types and address sizes: the only ARP the lab reads."""
FRAME_TYPES: Final = frozenset(FrameType)
IPV4: Final = struct.Struct("!BxH2xHxB2x4s4s")
FRAGMENT: Final = 0x3FFF
"""More fragments, or a fragment's offset: a fragment is not read (the lab's frames are never cut)."""
IPPROTO_TCP: Final = 6
TCP_HEADER: Final = struct.Struct("!HHI4xBB")
TCP_FLAGS: Final = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"))
HTTP_REQUEST_LINE: Final = re.compile(rb"([A-Z]{3,10}) (\S{1,8000}) HTTP/1\.[01]\r\n")
HTTP_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])( [^\r\n]*)?\r\n")
HTTP_LENGTH: Final = re.compile(rb"[0-9]{1,15}")
HTTP_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,15}")
HTTP_MAX_HEAD: Final = 64 * 1024
"""A request or response head longer than this is taken for no HTTP at all."""
HTTP_TARGET_SHOWN: Final = 40
"""How much of a request's target its label shows."""


@dataclass(frozen=True)
class Segment:
    time: float
    from_client: bool
    flags: str
    """Letters, as tcpdump and scapy write them: S SYN, A ACK, P PSH, F FIN, R RST."""
    seq: int
    payload: bytes
    macs: tuple[str, str]
    """The Ethernet source and destination: through ARP, whose MAC a frame was sent to."""


@dataclass(frozen=True)
class Message:
    """One lab-channel frame, TLS record, SSH packet or HTTP message, as it crossed the wire."""

    time: float
    from_client: bool
    label: str
    """What a reader calls it: "ClientHello", "Finished", "Alert", "record", "TLS ApplicationData",
    "SSH-2.0-OpenSSH_9.2p1", "KEXINIT", "encrypted" (SSH's bytes after NEWKEYS, one TCP segment's),
    "POST /login", "HTTP 302 Found"."""
    data: bytes
    """The frame, record, SSH packet or HTTP message, header included: the same bytes on two legs are
    the same message."""


@dataclass
class Conversation:
    client: Address
    """Who opened it (the SYN's sender; when the capture holds no SYN, the SYN-ACK's receiver or
    the first sender)."""
    server: Address
    segments: list[Segment] = field(default_factory=list)
    protocol: str = "tcp"
    """"lab", "tls", "ssh", "http", or "tcp" when what it carried is none of these (or nothing)."""
    messages: list[Message] = field(default_factory=list)
    unreadable: dict[bool, str] = field(default_factory=dict)
    """For a direction (keyed by from_client) whose bytes stopped being messages: why."""
    agreed: str = ""
    """What the two ends' messages in the clear say they agreed on, where the protocol says it in the
    clear: SSH's key exchange method ("curve25519-sha256"); "" otherwise."""

    @property
    def opened(self) -> float:
        return self.segments[0].time


@dataclass(frozen=True)
class ArpFrame:
    time: float
    macs: tuple[str, str]
    """The Ethernet source and destination: who sent it, to whom (the ARP part can say otherwise)."""
    reply: bool
    sender_ip: str
    sender_mac: str
    target_ip: str


@dataclass
class Capture:
    conversations: list[Conversation]
    """In the order they opened."""
    arp: list[ArpFrame]


def read_capture(frames: Iterable[Frame]) -> Capture:
    """Ethernet, IPv4, TCP and ARP read with struct (scapy's dissectors cost a hundred times more
    per frame, and a check reads every run's capture); any other frame, or a short one, is skipped."""
    by_pair: dict[frozenset[Address], Conversation] = {}
    """The conversation going on between two ends, whichever sent first."""
    conversations: list[Conversation] = []
    arp = []
    for frame in frames:
        data = frame.data
        if len(data) < ETHERNET.size:
            continue
        destination_mac, source_mac, ethertype = ETHERNET.unpack_from(data)
        if ethertype == ETHERTYPE_ARP and len(data) >= ETHERNET.size + ARP_IPV4.size:
            *kinds, op, sender_mac, sender_ip, _, target_ip = ARP_IPV4.unpack_from(data, ETHERNET.size)
            if tuple(kinds) != ARP_FOR_IPV4_OVER_ETHERNET:
                continue
            macs = (_mac(source_mac), _mac(destination_mac))
            arp.append(ArpFrame(frame.time, macs, op == 2, _ip(sender_ip), _mac(sender_mac), _ip(target_ip)))
            continue
        segment = _tcp_over_ipv4(data) if ethertype == ETHERTYPE_IPV4 else None
        if segment is None:
            continue
        source, destination, flags, seq, payload = segment
        pair = frozenset((source, destination))
        conversation = by_pair.get(pair)
        if conversation is None or (flags == "S" and not _retransmitted_syn(conversation, source, seq)):
            client, server = (destination, source) if flags == "SA" else (source, destination)
            conversation = by_pair[pair] = Conversation(client=client, server=server)
            conversations.append(conversation)
        conversation.segments.append(
            Segment(
                frame.time,
                source == conversation.client,
                flags,
                seq,
                payload,
                (_mac(source_mac), _mac(destination_mac)),
            )
        )
    for conversation in conversations:
        _read_messages(conversation)
    return Capture(sorted(conversations, key=lambda c: c.opened), arp)


def _retransmitted_syn(conversation: Conversation, source: Address, seq: int) -> bool:
    """Whether a SYN is this conversation's own, sent again; otherwise it opens a new one (the same
    two ports used again)."""
    return source == conversation.client and any(
        s.flags == "S" and s.seq == seq for s in conversation.segments if s.from_client
    )


def _tcp_over_ipv4(data: bytes) -> tuple[Address, Address, str, int, bytes] | None:
    at = ETHERNET.size
    if len(data) < at + IPV4.size:
        return None
    version_ihl, total, fragment, protocol, source_ip, destination_ip = IPV4.unpack_from(data, at)
    header = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or protocol != IPPROTO_TCP or header < IPV4.size or fragment & FRAGMENT:
        return None
    tcp_at = at + header
    if len(data) < tcp_at + TCP_HEADER.size:
        return None
    source_port, destination_port, seq, offset, flag_bits = TCP_HEADER.unpack_from(data, tcp_at)
    if offset >> 4 < 5:  # shorter than a TCP header: not one
        return None
    payload_at = tcp_at + (offset >> 4) * 4
    end = min(at + total, len(data))  # Ethernet pads a short frame: the IP length says where it ends
    flags = "".join(letter for bit, letter in TCP_FLAGS if flag_bits & bit)
    return (
        (_ip(source_ip), source_port),
        (_ip(destination_ip), destination_port),
        flags,
        seq,
        data[payload_at:end] if payload_at < end else b"",
    )


def _ip(raw: bytes) -> str:
    return ".".join(map(str, raw))


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _byte_stream(conversation: Conversation, from_client: bool) -> list[tuple[float, bytes]]:
    """One direction's bytes in order, each with the time of the segment that brought it; a
    retransmission adds only what is new. Stops at bytes the capture lacks, and says so."""
    chunks: list[tuple[float, bytes]] = []
    expected: int | None = None
    for segment in conversation.segments:
        if segment.from_client != from_client:
            continue
        if "S" in segment.flags:
            expected = (segment.seq + 1) % SEQ_SPACE
            continue
        if not segment.payload:
            continue
        if expected is None:
            expected = segment.seq
        behind = (expected - segment.seq) % SEQ_SPACE
        if behind >= SEQ_SPACE // 2:
            conversation.unreadable[from_client] = "bytes are missing from the capture"
            return chunks
        if behind < len(segment.payload):
            chunks.append((segment.time, segment.payload[behind:]))
            expected = (expected + len(segment.payload) - behind) % SEQ_SPACE
    return chunks


def _read_messages(conversation: Conversation) -> None:
    streams = {side: _byte_stream(conversation, side) for side in (True, False)}
    opening = b"".join(data for _, data in streams[True])
    if opening[:2] == b"\x16\x03":
        conversation.protocol, read = "tls", _tls_messages
    elif _opens_with_a_client_hello(opening):
        conversation.protocol, read = "lab", _lab_messages
    elif any(b"".join(data for _, data in streams[side])[:4] == b"SSH-" for side in (True, False)):
        conversation.protocol, read = "ssh", _ssh_messages
    elif HTTP_REQUEST_LINE.match(opening):
        conversation.protocol, read = "http", _http_messages
    else:
        return
    messages = [m for side in (True, False) for m in read(conversation, side, streams[side])]
    if conversation.protocol == "ssh":
        messages = _name_the_key_exchange(conversation, messages)
    conversation.messages = sorted(messages, key=lambda m: m.time)


def _opens_with_a_client_hello(data: bytes) -> bool:
    frames, _ = _lab_frames(data[: HEADER.size + MAX_BODY])
    if not frames or frames[0][1].type is not FrameType.HANDSHAKE:
        return False
    try:
        return isinstance(decode_handshake(frames[0][1].body, "handshake"), ClientHello)
    except ChannelError:
        return False


def _lab_frames(data: bytes) -> tuple[list[tuple[int, LabFrame]], str | None]:
    """Every whole frame in `data`, each with the offset where it ends, and why the bytes after the
    last one are no frame (None: they are the start of one the capture cut off, or nothing)."""
    frames: list[tuple[int, LabFrame]] = []
    at = 0
    while len(data) - at >= HEADER.size:
        kind, length = HEADER.unpack_from(data, at)
        if kind not in FRAME_TYPES:
            return frames, f"not a lab frame: unknown frame type {kind}"
        if length > MAX_BODY:
            return frames, f"not a lab frame: its header announces {length} bytes, over {MAX_BODY}"
        end = at + HEADER.size + length
        if end > len(data):
            break
        frames.append((end, LabFrame(FrameType(kind), data[at + HEADER.size : end])))
        at = end
    return frames, None


def _lab_messages(
    conversation: Conversation, from_client: bool, chunks: list[tuple[float, bytes]]
) -> list[Message]:
    """Each frame at the time of the segment that completed it."""
    data = b"".join(chunk for _, chunk in chunks)
    frames, why = _lab_frames(data)
    completed = _completion_times(chunks)
    messages = [
        Message(completed(end), from_client, _lab_label(frame), frame.encode()) for end, frame in frames
    ]
    done = frames[-1][0] if frames else 0
    if why is not None:
        conversation.unreadable[from_client] = why
    elif done < len(data):
        conversation.unreadable.setdefault(from_client, f"a frame cut off after {len(data) - done} bytes")
    return messages


def _completion_times(chunks: list[tuple[float, bytes]]) -> Callable[[int], float]:
    """The time of the segment that brought the byte before a given offset of the joined stream."""
    ends = list(itertools.accumulate(len(chunk) for _, chunk in chunks))
    return lambda end: chunks[bisect.bisect_left(ends, end)][0]


def _lab_label(frame: LabFrame) -> str:
    if frame.type is FrameType.APPLICATION:
        return "record"
    if frame.type is FrameType.ALERT:
        return "Alert"
    try:
        return type(decode_handshake(frame.body, "handshake")).__name__
    except ChannelError:
        return "handshake (malformed)"


def _tls_messages(
    conversation: Conversation, from_client: bool, chunks: list[tuple[float, bytes]]
) -> list[Message]:
    buffer, encrypted = b"", False
    messages: list[Message] = []
    for time, data in chunks:
        buffer += data
        while len(buffer) >= TLS_RECORD.size:
            kind, _, length = TLS_RECORD.unpack_from(buffer)
            if kind not in TLS_TYPES or length > TLS_MAX_RECORD:
                conversation.unreadable[from_client] = f"not a TLS record: type {kind}, {length} bytes"
                return messages
            end = TLS_RECORD.size + length
            if len(buffer) < end:
                break
            record, buffer = buffer[:end], buffer[end:]
            label = f"TLS {TLS_TYPES[kind]}"
            if kind == 22 and not encrypted and length:
                label = f"TLS {TLS_HANDSHAKES.get(record[TLS_RECORD.size], 'Handshake')}"
            encrypted = encrypted or kind == 20
            messages.append(Message(time, from_client, label, record))
    if buffer:
        conversation.unreadable.setdefault(from_client, f"a record cut off after {len(buffer)} bytes")
    return messages


def _ssh_messages(
    conversation: Conversation, from_client: bool, chunks: list[tuple[float, bytes]]
) -> list[Message]:
    """The identification string and each packet in the clear at the time of the segment that
    completed it; after NEWKEYS, each segment's bytes as "encrypted" (a cipher such as
    chacha20-poly1305 encrypts the packets' lengths too: they cannot be cut into packets)."""
    data = b"".join(chunk for _, chunk in chunks)
    pieces, encrypted_from, why = _ssh_stream(data)
    completed = _completion_times(chunks)
    messages = [Message(completed(end), from_client, _ssh_label(piece), piece) for end, piece in pieces]
    if encrypted_from is not None:
        at = 0
        for time, chunk in chunks:
            start, at = max(encrypted_from - at, 0), at + len(chunk)
            if start < len(chunk):
                messages.append(Message(time, from_client, "encrypted", chunk[start:]))
        return messages
    done = pieces[-1][0] if pieces else 0
    if why is not None:
        conversation.unreadable[from_client] = why
    elif done < len(data):
        what = "an SSH packet" if pieces else "an SSH identification string"
        conversation.unreadable.setdefault(from_client, f"{what} cut off after {len(data) - done} bytes")
    return messages


def _ssh_stream(data: bytes) -> tuple[list[tuple[int, bytes]], int | None, str | None]:
    """The identification string and the packets in the clear after it, each with the offset where
    it ends; where the encrypted bytes begin (after the first NEWKEYS; None before one); why the bytes
    after the last packet are none (None: the start of one the capture cut off, or nothing)."""
    line = SSH_IDENTIFICATION.match(data, 0, SSH_MAX_IDENTIFICATION)
    if line is None:
        whole = b"\n" in data[:SSH_MAX_IDENTIFICATION] or len(data) >= SSH_MAX_IDENTIFICATION
        if whole or not data.startswith(b"SSH-"[: len(data)]):
            return [], None, f"not an SSH identification string: {data[:40]!r}"
        return [], None, None  # its start: the capture ends there
    pieces = [(line.end(), line.group())]
    if line.group(1) not in (b"2.0", b"1.99"):
        return pieces, None, f"SSH {line.group(1).decode()}, not SSH 2: not read"
    at = line.end()
    while len(data) - at >= SSH_PACKET.size + 1:
        length, padding = SSH_PACKET.unpack_from(data, at)
        if length > SSH_MAX_PACKET or (4 + length) % SSH_BLOCK or padding < 4 or length - padding - 1 < 1:
            return pieces, None, f"not an SSH packet: {length} bytes, {padding} of them padding"
        end = 4 + at + length
        if end > len(data):
            break
        pieces.append((end, data[at:end]))
        kind, at = data[at + SSH_PACKET.size], end
        if kind == SSH_NEWKEYS:
            return pieces, at, None
    return pieces, None, None


def _ssh_label(piece: bytes) -> str:
    if piece[:4] == b"SSH-":
        line = piece.rstrip(b"\r\n").decode("ascii")
        return line[:SSH_SHOWN] + ("..." if len(line) > SSH_SHOWN else "")
    kind = piece[SSH_PACKET.size]
    return SSH_MESSAGES.get(kind, f"SSH message {kind}")


def _name_the_key_exchange(conversation: Conversation, messages: list[Message]) -> list[Message]:
    """The key exchange method the two ends agreed on, as their KEXINITs say (the first on the
    client's list that is also on the server's, RFC 4253 §7.1), and its messages named by it."""
    offers: dict[bool, list[str]] = {}
    for message in messages:
        if message.label == "KEXINIT":
            offers.setdefault(message.from_client, _kex_methods(message.data))
    if len(offers) < 2:
        return messages
    conversation.agreed = next((method for method in offers[True] if method in offers[False]), "")
    names = next(
        (names for prefixes, names in SSH_KEX_MESSAGES if conversation.agreed.startswith(prefixes)), {}
    )
    return [
        replace(m, label=names[m.data[SSH_PACKET.size]])
        if m.label.startswith("SSH message ") and m.data[SSH_PACKET.size] in names
        else m
        for m in messages
    ]


def _kex_methods(packet: bytes) -> list[str]:
    """A KEXINIT's key exchange methods: its first name-list, after the message type and a 16-byte
    cookie (RFC 4253 §7.1); none when the packet is too short to hold it."""
    at = SSH_PACKET.size + 1 + 16
    if len(packet) < at + 4:
        return []
    length = int.from_bytes(packet[at : at + 4])
    if len(packet) < at + 4 + length:
        return []
    return packet[at + 4 : at + 4 + length].decode("ascii", "replace").split(",")


def ssh_host_key(message: Message) -> bytes | None:
    """The host key (or host certificate) an SSH key exchange reply carries, its first field after
    the message type (RFC 4253 §8, RFC 4419 §3, RFC 5656 §4); None for another message, or for a
    reply too short to hold it."""
    if message.label not in SSH_KEX_REPLIES:
        return None
    at = SSH_PACKET.size + 1
    length = int.from_bytes(message.data[at : at + 4])
    key = message.data[at + 4 : at + 4 + length]
    return key if len(message.data) >= at + 4 and len(key) == length else None


def _http_messages(
    conversation: Conversation, from_client: bool, chunks: list[tuple[float, bytes]]
) -> list[Message]:
    """Each request (from the client) or response, head and body, at the time of the segment that
    completed it; a body's length as its head says (Content-Length, chunked) or, for a response that
    says neither, up to the close."""
    data = b"".join(chunk for _, chunk in chunks)
    completed = _completion_times(chunks)
    messages: list[Message] = []
    at = 0
    while at < len(data):
        read = _http_message(data, at, from_client)
        if isinstance(read, str):
            conversation.unreadable[from_client] = read
            break
        if read is None:
            cut = f"an HTTP message cut off after {len(data) - at} bytes"
            conversation.unreadable.setdefault(from_client, cut)
            break
        end, label = read
        messages.append(Message(completed(end), from_client, label, data[at:end]))
        at = end
    return messages


def _http_message(data: bytes, at: int, request: bool) -> tuple[int, str] | str | None:
    """Where the HTTP message at `at` ends, and its label; why it is none (a string); None when the
    capture holds only its start."""
    head_end = data.find(b"\r\n\r\n", at, at + HTTP_MAX_HEAD)
    if head_end < 0:
        return None if len(data) - at < HTTP_MAX_HEAD else f"not HTTP: a head over {HTTP_MAX_HEAD} bytes"
    head = data[at : head_end + 2]
    line = (HTTP_REQUEST_LINE if request else HTTP_STATUS_LINE).match(head)
    if line is None:
        return f"not HTTP: {head[:40]!r}"
    if request:
        method, target = line.group(1).decode(), line.group(2).decode("ascii", "replace")
        label = f"{method} {target[:HTTP_TARGET_SHOWN]}{'...' if len(target) > HTTP_TARGET_SHOWN else ''}"
    else:
        label = f"HTTP {line.group(1).decode()}{(line.group(2) or b'').decode('ascii', 'replace')}"
    headers = dict(_http_header(raw) for raw in head[line.end() :].split(b"\r\n") if b":" in raw)
    body = head_end + 4
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        end = _chunked_end(data, body)
        return end if isinstance(end, str) or end is None else (end, label)
    length = headers.get(b"content-length")
    if length is not None:
        if not HTTP_LENGTH.fullmatch(length):
            return f"not HTTP: Content-Length {length[:20]!r}"
        end = body + int(length)
        return (end, label) if end <= len(data) else None
    no_body = request or line.group(1)[:1] == b"1" or line.group(1) in (b"204", b"304")
    return (body if no_body else len(data)), label


def _http_header(raw: bytes) -> tuple[bytes, bytes]:
    name, _, value = raw.partition(b":")
    return name.strip().lower(), value.strip()


def _chunked_end(data: bytes, at: int) -> int | str | None:
    """Where a chunked body that starts at `at` ends (after its last chunk and trailers)."""
    while True:
        size_end = data.find(b"\r\n", at)
        if size_end < 0:
            return None
        size = data[at:size_end].split(b";")[0].strip()
        if not HTTP_CHUNK_SIZE.fullmatch(size):
            return f"not HTTP: chunk size {size[:20]!r}"
        length = int(size, 16)
        if length == 0:  # the last chunk: then trailers, if any, and an empty line
            trailers_end = data.find(b"\r\n\r\n", size_end)
            return None if trailers_end < 0 else trailers_end + 4
        at = size_end + 2 + length + 2
        if at > len(data):
            return None
