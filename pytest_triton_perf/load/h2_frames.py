"""HTTP/2 frames and HPACK header blocks of the lean gRPC client (:mod:`h2_client`).

The pieces that need no connection: frame types, flags and settings; frames encoded; the
pre-encoded request header block; response header blocks decoded (with ``hpack``, behind a
cache); gRPC status codes and messages read; a message framed for gRPC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import hpack

from pytest_triton_perf.load.grpc_client import MODEL_INFER

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535

#: Distinct header blocks remembered by :class:`ResponseHeaderDecoder` (responses of one
#: model repeat a handful of blocks; error messages that name a request id do not repeat).
KNOWN_BLOCKS = 256


def request_header_block(authority: str, path: str = MODEL_INFER) -> bytes:
    """HPACK block of a gRPC unary request; it leaves no state in either HPACK table.

    Every field is sent "never indexed" (static-table matches as indices), so the one
    pre-encoded block means the same on every stream and the server's table stays empty.
    """
    headers = (
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    )
    return hpack.Encoder().encode([(n, v, True) for n, v in headers], huffman=False)


@dataclass(frozen=True)
class ResponseFields:
    """The header fields of one response header block that decide a call's outcome."""

    status: bytes | None = None  # :status
    grpc_status: bytes | None = None
    grpc_message: bytes | None = None


class ResponseHeaderDecoder:
    """HPACK decoding of response header blocks with ``hpack``, Huffman and dynamic table
    included, plus a cache that keeps the common case cheap.

    The cache: a block decoded while the dynamic table was empty, that left the table empty
    and its size unchanged, decodes to the same fields whenever the table is in that state
    again (decoding is a function of the bytes and the table). Triton's responses are such
    blocks once the server honours our table size of 0, and a handful of them repeat, so
    most responses cost one dictionary lookup instead of an ``hpack`` decode (about 7 us
    each, two blocks per call). Every block not in the cache goes through ``hpack``; an
    unreadable one raises :class:`hpack.HPACKError` and nothing is assumed about it.
    """

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()
        self._table = self._decoder.header_table
        self._known: dict[bytes, tuple[int, ResponseFields]] = {}

    def decode(self, block: bytes) -> ResponseFields:
        """The outcome fields of one complete header block."""
        table = self._table
        empty = not table.dynamic_entries
        size = table.maxsize
        if empty:
            known = self._known.get(block)
            if known is not None and known[0] == size:
                return known[1]
        status: bytes | None = None
        grpc_status: bytes | None = None
        grpc_message: bytes | None = None
        for name, value in self._decoder.decode(block, raw=True):
            if name == b":status":
                status = value
            elif name == b"grpc-status":
                grpc_status = value
            elif name == b"grpc-message":
                grpc_message = value
        fields = ResponseFields(status, grpc_status, grpc_message)
        stateless = empty and not table.dynamic_entries and table.maxsize == size
        if stateless and len(self._known) < KNOWN_BLOCKS:
            self._known[block] = (size, fields)
        return fields


class FrameError(Exception):
    """A frame sequence that breaks HTTP/2 (the connection cannot go on)."""


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One whole frame: the 9-byte header and the payload."""
    return struct.pack(">IBI", len(payload) << 8 | kind, flags, stream) + payload


def frame_header(length: int, kind: int, flags: int, stream: int) -> bytes:
    """A frame's 9-byte header alone, for a payload of ``length`` bytes sent after it."""
    return struct.pack(">I", length)[1:] + struct.pack(">BBI", kind, flags, stream)


#: gRPC status codes by number.
GRPC_CODES = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]


def code_name(raw: bytes) -> str:
    """The name of a ``grpc-status`` value (``NOT_FOUND``), or the raw value when unknown."""
    try:
        return GRPC_CODES[int(raw)]
    except (ValueError, IndexError):
        return f"grpc-status {raw.decode(errors='replace')}"


def percent_decode(raw: bytes) -> str:
    """A ``grpc-message`` value read: percent-encoded UTF-8, invalid escapes kept as they are."""
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):
            try:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", "replace")


def grpc_message(serialized: bytes) -> bytes:
    """A protobuf message framed for gRPC: uncompressed flag + 4-byte length + bytes."""
    return b"\x00" + struct.pack(">I", len(serialized)) + serialized
