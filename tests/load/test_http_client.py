"""The HTTP client's request encoding and response handling, over a real loopback socket.

The peer here is a scripted asyncio server (not Triton) so that each response shape, split
at awkward byte boundaries, can be sent on purpose; the client against the real Triton is
covered by tests/measure/test_engine.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httptools
import pytest

from pytest_triton_perf.load.http_client import HttpInferClient, encode_request, infer_path
from pytest_triton_perf.load.transport import InputTensor, TransportError


def test_infer_path_quotes_model_and_version() -> None:
    assert infer_path("simple", None) == "/v2/models/simple/infer"
    assert infer_path("a b", "2") == "/v2/models/a%20b/versions/2/infer"


def test_encoded_request_is_valid_http_with_binary_tensor_data() -> None:
    t = InputTensor("INPUT0", "FP32", (1, 2), b"\x00" * 8)
    raw = encode_request("127.0.0.1:8000", "simple", "1", [t], ["OUTPUT0"])
    seen: dict[str, object] = {"headers": {}, "body": b""}

    class P:
        def on_url(self, url: bytes) -> None:
            seen["url"] = url

        def on_header(self, name: bytes, value: bytes) -> None:
            seen["headers"][name.decode().lower()] = value.decode()  # type: ignore[index]

        def on_body(self, body: bytes) -> None:
            seen["body"] += body  # type: ignore[operator]

    httptools.HttpRequestParser(P()).feed_data(raw)
    headers = seen["headers"]
    body = seen["body"]
    assert isinstance(headers, dict) and isinstance(body, bytes)
    assert seen["url"] == b"/v2/models/simple/versions/1/infer"
    n = int(headers["inference-header-content-length"])
    assert int(headers["content-length"]) == len(body) == n + 8
    header = json.loads(body[:n])
    assert header["inputs"] == [
        {
            "name": "INPUT0",
            "shape": [1, 2],
            "datatype": "FP32",
            "parameters": {"binary_data_size": 8},
        }
    ]
    assert header["outputs"] == [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
    assert body[n:] == b"\x00" * 8


OK_BODY = b'{"model_name":"m","outputs":[]}'
OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Inference-Header-Content-Length: " + str(len(OK_BODY)).encode() + b"\r\n"
    b"Content-Length: "
    + str(len(OK_BODY) + 4).encode()
    + b"\r\n\r\n"
    + OK_BODY
    + b"\x01\x02\x03\x04"
)
ERROR_BODY = b'{"error":"unexpected shape for input \'INPUT0\'"}'
ERROR = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(ERROR_BODY)).encode() + b"\r\n\r\n" + ERROR_BODY
)


async def _serve(
    responses: list[bytes], *, chunk: int, close_after: int | None = None
) -> tuple[asyncio.Server, int, Callable[[], Awaitable[None]]]:
    """A loopback server answering each request with the next scripted response."""
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            await reader.readexactly(length)
            data = responses[served % len(responses)]
            served += 1
            for i in range(0, len(data), chunk):
                writer.write(data[i : i + chunk])
                await writer.drain()
                await asyncio.sleep(0)
            if close_after is not None and served >= close_after:
                writer.close()
                return

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]

    async def stop() -> None:
        srv.close()
        await srv.wait_closed()

    return srv, port, stop


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_responses_are_parsed_whatever_the_chunking(chunk: int) -> None:
    async def run() -> list[str | None]:
        _, port, stop = await _serve([OK, ERROR, OK], chunk=chunk)
        t = InputTensor("INPUT0", "FP32", (1,), b"\x00" * 4)
        client = HttpInferClient("127.0.0.1", port, [encode_request("x", "m", None, [t], [])])
        out = [await client.infer(0) for _ in range(6)]
        await client.close()
        await stop()
        return out

    out = asyncio.run(run())
    assert out[0] is None and out[2] is None and out[3] is None
    assert out[1] == "HTTP 400: unexpected shape for input 'INPUT0'"
    assert out[4] == out[1]


def test_client_reconnects_after_the_server_closed_an_idle_connection() -> None:
    async def run() -> tuple[str | None, str | None]:
        _, port, stop = await _serve([OK], chunk=10_000, close_after=1)
        t = InputTensor("INPUT0", "FP32", (1,), b"\x00" * 4)
        client = HttpInferClient("127.0.0.1", port, [encode_request("x", "m", None, [t], [])])
        first = await client.infer(0)
        await asyncio.sleep(0.05)  # the server's close reaches the client
        second = await client.infer(0)  # reconnects on a fresh connection
        await client.close()
        await stop()
        return first, second

    assert asyncio.run(run()) == (None, None)


def test_connection_closed_before_the_response_is_a_transport_error() -> None:
    async def run() -> None:
        _, port, stop = await _serve([b""], chunk=10, close_after=1)
        t = InputTensor("INPUT0", "FP32", (1,), b"\x00" * 4)
        client = HttpInferClient("127.0.0.1", port, [encode_request("x", "m", None, [t], [])])
        try:
            await client.infer(0)
        finally:
            await client.close()
            await stop()

    with pytest.raises(TransportError, match="connection closed by the server"):
        asyncio.run(run())


def test_connection_refused_is_a_transport_error() -> None:
    async def run() -> None:
        _, port, stop = await _serve([OK], chunk=10)
        await stop()
        client = HttpInferClient("127.0.0.1", port, [b"GET / HTTP/1.1\r\n\r\n"])
        await client.infer(0)

    with pytest.raises(TransportError, match=r"cannot connect to 127\.0\.0\.1"):
        asyncio.run(run())
