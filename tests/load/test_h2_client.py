"""HPACK pieces and HTTP/2 framing of the lean gRPC client (pure)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from pytest_triton_perf.load.h2_client import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    HUFFMAN,
    SETTINGS,
    H2Connection,
    HpackDecoder,
    encode_int,
    encode_str,
    grpc_message,
    request_header_block,
)


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [
        (10, 5, b"\x0a"),  # RFC 7541 C.1.1
        (1337, 5, b"\x1f\x9a\x0a"),  # RFC 7541 C.1.2
        (42, 8, b"\x2a"),  # RFC 7541 C.1.3
    ],
)
def test_integers_round_trip(value: int, prefix: int, encoded: bytes) -> None:
    assert encode_int(value, prefix) == encoded
    assert HpackDecoder()._int(encoded, 0, prefix) == (value, len(encoded))


def test_request_block_decodes_to_a_grpc_request() -> None:
    headers = HpackDecoder().decode(request_header_block("127.0.0.1:8001"))
    assert headers == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
        (b":authority", b"127.0.0.1:8001"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]


def test_dynamic_table_indexing_and_eviction() -> None:
    d = HpackDecoder(max_size=100)
    # Literal with incremental indexing, new name (0x40), then the same header by index 62.
    block = b"\x40" + encode_str(b"grpc-status") + encode_str(b"0")
    assert d.decode(block) == [(b"grpc-status", b"0")]
    assert d.decode(b"\xbe") == [(b"grpc-status", b"0")]  # 0x80 | 62
    # Entry size is 11 + 1 + 32 = 44; two more push the first one out of 100 bytes.
    d.decode(b"\x40" + encode_str(b"a" * 10) + encode_str(b"b"))
    d.decode(b"\x40" + encode_str(b"c" * 10) + encode_str(b"d"))
    assert [n for n, _ in d.table] == [b"c" * 10, b"a" * 10]
    # Size update to 0 empties the table.
    d.decode(b"\x20")
    assert not d.table


def test_huffman_strings_are_marked_not_misread() -> None:
    block = b"\x00" + encode_str(b"x-name") + b"\x81\x07"  # value: Huffman "0"
    assert HpackDecoder().decode(block) == [(b"x-name", HUFFMAN)]


def test_grpc_message_framing() -> None:
    assert grpc_message(b"abc") == b"\x00\x00\x00\x00\x03abc"


class FakeTransport(asyncio.Transport):
    """Collects what the connection writes (no socket involved)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        pass


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def test_call_outcomes_from_response_frames() -> None:
    async def run() -> tuple[str | None, str | None, bytes]:
        conn = H2Connection()
        transport = FakeTransport()
        conn.connection_made(transport)
        ok_call = asyncio.ensure_future(conn.call(request_header_block("h:1"), grpc_message(b"x")))
        bad_call = asyncio.ensure_future(conn.call(request_header_block("h:1"), grpc_message(b"y")))
        await asyncio.sleep(0)
        status_200 = b"\x88"
        ok_trailers = b"\x40" + encode_str(b"grpc-status") + encode_str(b"0")
        error_trailers = (
            status_200
            + b"\x00"
            + encode_str(b"grpc-status")
            + encode_str(b"3")
            + b"\x00"
            + encode_str(b"grpc-message")
            + encode_str(b"bad input%20shape")
        )
        # Responses split at an awkward byte boundary.
        data = (
            frame(SETTINGS, 0, 0)
            + frame(HEADERS, END_HEADERS, 1, status_200)
            + frame(DATA, 0, 1, grpc_message(b"result"))
            + frame(HEADERS, END_HEADERS | END_STREAM, 1, ok_trailers)
            + frame(HEADERS, END_HEADERS | END_STREAM, 3, error_trailers)
        )
        conn.data_received(data[:13])
        conn.data_received(data[13:])
        return await ok_call, await bad_call, bytes(transport.written)

    ok, bad, written = asyncio.run(run())
    assert ok is None
    assert bad == "INVALID_ARGUMENT: bad input shape"
    assert written.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert frame(SETTINGS, 1, 0) in written  # the server's SETTINGS were acknowledged
