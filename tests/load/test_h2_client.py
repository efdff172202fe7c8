"""HPACK pieces and HTTP/2 framing of the lean gRPC client (pure)."""

from __future__ import annotations

import asyncio
import struct

import hpack
import pytest

from pytest_triton_perf.load.h2_client import H2Connection
from pytest_triton_perf.load.h2_frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    SETTINGS,
    ResponseFields,
    ResponseHeaderDecoder,
    grpc_message,
    request_header_block,
)
from pytest_triton_perf.load.transport import TransportError


def test_request_block_decodes_to_a_grpc_request_and_leaves_no_table_state() -> None:
    decoder = hpack.Decoder()
    headers = decoder.decode(request_header_block("127.0.0.1:8001"), raw=True)
    assert headers == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
        (b":authority", b"127.0.0.1:8001"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    # The same bytes go out on every stream: they must not depend on the server's table.
    assert not decoder.header_table.dynamic_entries


def huffman_block(*headers: tuple[str, str], table_size: int = 0) -> bytes:
    """A header block as an encoder that Huffman-codes every literal sends it."""
    encoder = hpack.Encoder()
    encoder.header_table_size = table_size  # the size update leads the block
    return encoder.encode(list(headers), huffman=True)


def test_huffman_coded_fields_are_read() -> None:
    block = huffman_block((":status", "200"), ("grpc-status", "13"), ("grpc-message", "no%20way"))
    assert b"grpc-status" not in block  # Huffman-coded, not plain
    fields = ResponseHeaderDecoder().decode(block)
    assert fields == ResponseFields(b"200", b"13", b"no%20way")


def test_cached_blocks_decode_as_hpack_does_while_the_table_is_in_use() -> None:
    """The same bytes mean different fields when they index a dynamic table that changed:
    the cache must not answer for them."""
    decoder = ResponseHeaderDecoder()
    # Literal with incremental indexing: ("grpc-status", "0") becomes dynamic entry 62.
    assert decoder.decode(b"\x40\x0bgrpc-status\x010").grpc_status == b"0"
    assert decoder.decode(b"\xbe").grpc_status == b"0"  # indexed 62
    decoder.decode(b"\x40\x0bgrpc-status\x0213")  # now entry 62 is ("grpc-status", "13")
    assert decoder.decode(b"\xbe").grpc_status == b"13"
    # Table size 0 empties the table; afterwards the stateless blocks are cached and
    # still decode right, the second time from the cache.
    plain = b"\x20\x88"
    assert decoder.decode(plain) == ResponseFields(status=b"200")
    huffman = huffman_block(("grpc-status", "0"))
    assert [decoder.decode(huffman) for _ in range(2)] == [ResponseFields(grpc_status=b"0")] * 2


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (b"\x00\x82\xff\xff\x01\x30", "Huffman"),  # name: a Huffman string that is not valid
        (b"\xc0", "Invalid table index 64"),  # indexes an empty dynamic table
        (b"\x00\x0bgrpc-status\x05ab", "Truncated"),  # value shorter than its length
    ],
)
def test_unreadable_blocks_raise(block: bytes, reason: str) -> None:
    with pytest.raises(hpack.HPACKError, match=reason):
        ResponseHeaderDecoder().decode(block)


def test_grpc_message_framing() -> None:
    assert grpc_message(b"abc") == b"\x00\x00\x00\x00\x03abc"


def string(raw: bytes) -> bytes:
    """A short HPACK string literal, not Huffman-coded (as Triton's server sends them)."""
    return bytes([len(raw)]) + raw


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
        ok_trailers = b"\x40" + string(b"grpc-status") + string(b"0")
        error_trailers = (
            status_200
            + b"\x00"
            + string(b"grpc-status")
            + string(b"3")
            + b"\x00"
            + string(b"grpc-message")
            + string(b"bad input%20shape")
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


Outcome = str | None | BaseException


def run_calls(n: int, responses: bytes, chunk: int) -> list[Outcome]:
    """Outcomes of ``n`` calls (streams 1, 3, ...) answered by ``responses``, which reach
    the connection ``chunk`` bytes at a time (frames split at every kind of boundary)."""

    async def run() -> list[Outcome]:
        conn = H2Connection()
        conn.connection_made(FakeTransport())
        calls = [
            asyncio.ensure_future(conn.call(request_header_block("h:1"), grpc_message(b"x")))
            for _ in range(n)
        ]
        await asyncio.sleep(0)
        for k in range(0, len(responses), chunk):
            conn.data_received(responses[k : k + chunk])
        return list(await asyncio.gather(*calls, return_exceptions=True))

    return asyncio.run(run())


def huffman_response(stream: int, *trailers: tuple[str, str]) -> bytes:
    """A whole unary response whose header blocks are Huffman-coded."""
    head = huffman_block((":status", "200"), ("content-type", "application/grpc"))
    return (
        frame(HEADERS, END_HEADERS, stream, head)
        + frame(DATA, 0, stream, grpc_message(b"result"))
        + frame(HEADERS, END_HEADERS | END_STREAM, stream, huffman_block(*trailers))
    )


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_huffman_coded_responses_count_by_their_grpc_status(chunk: int) -> None:
    responses = (
        frame(SETTINGS, 0, 0)
        + huffman_response(1, ("grpc-status", "0"))
        + huffman_response(3, ("grpc-status", "3"), ("grpc-message", "bad input%20shape"))
        + huffman_response(5, ("grpc-status", "13"))
    )
    assert run_calls(3, responses, chunk) == [
        None,
        "INVALID_ARGUMENT: bad input shape",
        "INTERNAL: ",
    ]


def test_huffman_trailers_split_over_continuation_frames() -> None:
    trailers = huffman_block(("grpc-status", "8"), ("grpc-message", "queue full"))
    head = huffman_block((":status", "200"))
    responses = (
        frame(HEADERS, END_HEADERS, 1, head)
        + frame(HEADERS, END_STREAM, 1, trailers[:3])
        + frame(CONTINUATION, 0, 1, trailers[3:5])
        + frame(CONTINUATION, END_HEADERS, 1, trailers[5:])
    )
    assert run_calls(1, responses, 5) == ["RESOURCE_EXHAUSTED: queue full"]


@pytest.mark.parametrize(
    ("blocks", "outcome"),
    [
        ([b"\x88"], "response with HTTP status 200 and grpc-status missing"),
        (
            [huffman_block(("grpc-status", "0"))],
            "response with HTTP status missing and grpc-status OK",
        ),
        (
            [huffman_block((":status", "503"), ("grpc-status", "0"))],
            "response with HTTP status 503 and grpc-status OK",
        ),
    ],
)
def test_responses_without_a_readable_status_are_errors(blocks: list[bytes], outcome: str) -> None:
    responses = b"".join(frame(HEADERS, END_HEADERS, 1, b) for b in blocks[:-1]) + frame(
        HEADERS, END_HEADERS | END_STREAM, 1, blocks[-1]
    )
    assert run_calls(1, responses, 1000) == [outcome]


def test_an_unreadable_header_block_fails_the_calls_of_its_connection_saying_why() -> None:
    bad_huffman = b"\x00\x82\xff\xff\x01\x30"
    responses = frame(HEADERS, END_HEADERS, 1, b"\x88") + frame(
        HEADERS, END_HEADERS | END_STREAM, 1, bad_huffman
    )
    outcomes = run_calls(2, responses, 1000)
    assert all(isinstance(o, TransportError) for o in outcomes), outcomes
    text = str(outcomes[0])
    assert "unreadable response header block on stream 1" in text
    assert bad_huffman.hex() in text and "Huffman" in text
