"""A minimal HTTP/1.1 inference client: pre-encoded requests over one keep-alive connection.

tritonclient's clients serialise numpy arrays and parse JSON on every call; here a request is
encoded once (JSON header + binary tensor data, Triton's binary tensor extension) and the hot
path only writes bytes and lets httptools parse the response. Responses are parsed by
httptools, never by hand: Triton's ``Inference-Header-Content-Length`` header contains the
text ``Content-Length``.

A KServe V2 server without the binary tensor extension (MLServer) takes the tensors as JSON
(``"data"`` lists) and answers likewise: ``json_data=True`` encodes them so, once as well.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import httptools
import numpy as np

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import numpy_dtype
from pytest_triton_perf.load.transport import InputTensor, ShmRef, TransportError


def infer_path(model: str, version: str | None) -> str:
    """The URL path of Triton's infer endpoint for ``model`` (and ``version``)."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return path + "/infer"


def encode_request(
    host: str,
    model: str,
    version: str | None,
    inputs: Sequence[InputTensor],
    outputs: Sequence[str],
    output_shm: Mapping[str, ShmRef] | None = None,
    *,
    json_data: bool = False,
) -> bytes:
    """The complete HTTP request bytes of one inference with binary inputs and outputs.

    Inputs with a shared-memory reference (``InputTensor.shm``) and outputs named in
    ``output_shm`` carry the region parameters of Triton's shared-memory extension instead
    of binary data: their bytes never cross the socket. ``json_data``: the inputs' values
    as JSON lists and the outputs asked for as JSON (the KServe V2 core protocol, for a
    server without Triton's binary tensor extension).
    """
    if json_data:
        return _json_request(host, model, version, inputs, outputs)
    output_shm = output_shm or {}
    header = {
        "inputs": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "datatype": t.datatype,
                "parameters": (
                    _shm_parameters(t.shm)
                    if t.shm is not None
                    else {"binary_data_size": len(t.data)}
                ),
            }
            for t in inputs
        ],
        "outputs": [
            {
                "name": o,
                "parameters": (
                    _shm_parameters(output_shm[o]) if o in output_shm else {"binary_data": True}
                ),
            }
            for o in outputs
        ],
    }
    json_bytes = json.dumps(header, separators=(",", ":")).encode()
    binary = b"".join(t.data for t in inputs if t.shm is None)
    return RequestTemplate(_head(host, model, version), json_bytes, binary).render()


def _json_request(
    host: str,
    model: str,
    version: str | None,
    inputs: Sequence[InputTensor],
    outputs: Sequence[str],
) -> bytes:
    """An inference request of the KServe V2 core protocol: one JSON document."""
    body = {
        "inputs": [
            {"name": t.name, "shape": list(t.shape), "datatype": t.datatype, "data": json_values(t)}
            for t in inputs
        ],
        "outputs": [{"name": o} for o in outputs],
    }
    json_bytes = json.dumps(body, separators=(",", ":")).encode()
    head = _head(host, model, version).replace(b"application/octet-stream", b"application/json")
    return RequestTemplate(head, json_bytes, b"").render()


def json_values(t: InputTensor) -> list[Any]:
    """A tensor's values as the KServe V2 JSON form lists them: flat, row-major; BYTES
    elements as text (UTF-8, else Latin-1). InputSpecError for a tensor JSON cannot carry
    (shared memory, BF16)."""
    if t.shm is not None:
        raise InputSpecError(f"input '{t.name}': shared memory needs Triton's binary protocol")
    if t.datatype == "BYTES":
        texts, at = [], 0
        while at < len(t.data):
            size = int.from_bytes(t.data[at : at + 4], "little")
            raw = t.data[at + 4 : at + 4 + size]
            at += 4 + size
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
        return texts
    dtype = numpy_dtype(t.datatype)
    if dtype is None or t.datatype == "BF16":
        raise InputSpecError(
            f"input '{t.name}': datatype {t.datatype} has no JSON form; the server takes no"
            " binary tensor data (no Triton binary_tensor_data extension)"
        )
    values: list[Any] = np.frombuffer(t.data, dtype=dtype.newbyteorder("<")).tolist()
    return values


def _shm_parameters(ref: ShmRef) -> dict[str, Any]:
    """A tensor's parameters pointing at a registered region (what tritonclient sends)."""
    return {
        "shared_memory_region": ref.region,
        "shared_memory_byte_size": ref.byte_size,
        **({"shared_memory_offset": ref.offset} if ref.offset else {}),
    }


def _head(host: str, model: str, version: str | None) -> bytes:
    return (
        f"POST {infer_path(model, version)} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/octet-stream\r\n"
    ).encode("latin-1")


_LENGTHS = b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"


@dataclass(frozen=True)
class RequestTemplate:
    """One inference request in parts: the head up to the length headers, the JSON header
    and the binary tensor data. Sequence models render it with per-request parameters."""

    head: bytes
    json_header: bytes
    binary: bytes

    def render(self, parameters: bytes = b"") -> bytes:
        """The complete request; ``parameters`` (``"key":value`` pairs, JSON) become the
        request's ``parameters`` object."""
        header = self.json_header
        if parameters:
            header = b'{"parameters":{' + parameters + b"}," + header[1:]
        return (
            self.head
            + _LENGTHS % (len(header), len(header) + len(self.binary))
            + header
            + self.binary
        )

    @classmethod
    def parse(cls, request: bytes) -> RequestTemplate:
        """The parts of a request :func:`encode_request` wrote."""
        end = request.index(b"\r\n\r\n") + 4
        lines = request[:end].split(b"\r\n")
        head = b"".join(
            line + b"\r\n"
            for line in lines
            if line
            and not line.lower().startswith(
                (b"inference-header-content-length:", b"content-length:")
            )
        )
        (json_len,) = (
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"inference-header-content-length:")
        )
        return cls(head, request[end : end + json_len], request[end + json_len :])


def sequence_parameters(sequence_id: int | str, start: bool, end: bool) -> bytes:
    """The ``sequence_id``, ``sequence_start`` and ``sequence_end`` request parameters as
    :meth:`RequestTemplate.render` takes them (what tritonclient's HTTP client sends)."""
    return b'"sequence_id":%s,"sequence_start":%s,"sequence_end":%s' % (
        json.dumps(sequence_id).encode(),
        b"true" if start else b"false",
        b"true" if end else b"false",
    )


def _error_text(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body.decode("utf-8", "replace"))
        if isinstance(doc, dict) and "error" in doc:
            return f"HTTP {status}: {doc['error']}"
    except ValueError:
        pass
    text = body[:300].decode("utf-8", "replace")
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


class _Conn(asyncio.Protocol):
    """One TCP connection; at most one request outstanding (HTTP/1.1 without pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[str | None] | None = None
        self.closed = False
        self.keep_alive = True
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._error_body: list[bytes] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(TransportError(f"malformed HTTP response: {e}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail(TransportError(f"connection closed by the server{reason}"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._status = 0
        self._error_body = None

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if self._status != 200:
            self._error_body = []

    def on_body(self, body: bytes) -> None:
        if self._error_body is not None:
            self._error_body.append(body)
        elif body.startswith(b'{"error"'):
            # A 200 carrying an error document: Triton does not send one, but a proxy might.
            self._error_body = [body]

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if self._error_body is None:
            waiter.set_result(None)
        else:
            waiter.set_result(_error_text(self._status, b"".join(self._error_body)))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class HttpInferClient:
    """Sends pre-encoded HTTP inference requests over one keep-alive connection.

    Reconnects lazily when the server closed the connection; a request cancelled mid-flight
    closes the connection, since its late response would otherwise answer the next request.
    """

    def __init__(self, host: str, port: int, requests: Sequence[bytes]) -> None:
        self._host = host
        self._port = port
        self._requests = list(requests)
        self._conn: _Conn | None = None

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Conn, self._host, self._port)
        except OSError as e:
            raise TransportError(f"cannot connect to {self._host}:{self._port}: {e}") from e
        return conn

    async def connect(self) -> None:
        """Open the connection now, so that the first timed request does not pay for it."""
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()

    def infer(self, i: int) -> Coroutine[Any, Any, str | None]:
        """Send request ``i``; None on HTTP 200, the error text otherwise."""
        return self.infer_raw(self._requests[i])

    async def infer_raw(self, request: bytes) -> str | None:
        """Send complete HTTP request bytes; the outcome as :meth:`infer`'s."""
        conn = self._conn
        if conn is None or conn.closed or not conn.keep_alive:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = self._conn = await self._connect()
        assert conn.transport is not None
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        conn.waiter = waiter
        conn.transport.write(request)
        try:
            return await waiter
        except asyncio.CancelledError:
            conn.transport.close()
            conn.closed = True
            raise

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
