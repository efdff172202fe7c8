"""Triton's HTTP generate extension: ``protocol="generate"``.

``POST /v2/models/<m>/generate_stream`` answers with server-sent events, one ``data: {json}``
event per response of a decoupled model; ``POST /v2/models/<m>/generate`` with one JSON
document (a model that sends one response). The request body is one JSON object with the
input names as keys (a one-element tensor as a scalar, a longer one as a flat list), e.g.
``{"text_input": "...", "stream": true, "sampling_parameters": "{\\"max_tokens\\": 64}"}``;
a response's outputs are keys of its JSON object; an error is ``{"error": "..."}``, which
may come as an event after the HTTP status was sent.

The request bytes are encoded once (:func:`encode_request`). :class:`GenerateClient` keeps
one HTTP/1.1 keep-alive connection and one request in flight on it, parses the response
with httptools (its chunked framing included) and stamps every event with
``perf_counter_ns`` when the bytes that complete it arrive, as the gRPC stream clients of
:mod:`pytest_triton_perf.load.stream` stamp their messages. The events' JSON is decoded only
where something is read from it: an error, the text kept for a tokenizer, or the elements of
``token_output``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from time import perf_counter_ns
from typing import Any, cast
from urllib.parse import quote

import httptools
import numpy as np

from pytest_triton_perf.load.model_spec import numpy_dtype
from pytest_triton_perf.load.stream import StreamSpec
from pytest_triton_perf.load.transport import InputTensor, TransportError

GENERATE = "generate"
GENERATE_STREAM = "generate_stream"


def generate_path(model: str, version: str | None, stream: bool) -> str:
    """The URL path of the generate (or generate_stream) endpoint of ``model``."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return f"{path}/{GENERATE_STREAM if stream else GENERATE}"


def _value(t: InputTensor) -> Any:
    """An input tensor as the generate extension takes it: a scalar for one element, else
    a flat list; BYTES as text."""
    if t.datatype == "BYTES":
        items, pos, data = [], 0, t.data
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 4], "little")
            items.append(data[pos + 4 : pos + 4 + n].decode("utf-8", "replace"))
            pos += 4 + n
        values: list[Any] = items
    else:
        dtype = numpy_dtype(t.datatype)
        assert dtype is not None, t.datatype
        values = np.frombuffer(t.data, dtype=dtype.newbyteorder("<")).tolist()
    return values[0] if len(values) == 1 else values


def request_body(tensors: Sequence[InputTensor]) -> bytes:
    """The JSON body of a generate request carrying ``tensors``."""
    return json.dumps({t.name: _value(t) for t in tensors}, separators=(",", ":")).encode()


def encode_request(
    host: str, model: str, version: str | None, tensors: Sequence[InputTensor], stream: bool
) -> bytes:
    """The complete HTTP/1.1 request of one generate (``stream``: generate_stream) call."""
    body = request_body(tensors)
    accept = b"text/event-stream" if stream else b"application/json"
    return (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: %s\r\n"
        b"Content-Length: %d\r\n\r\n"
        % (generate_path(model, version, stream).encode(), host.encode(), accept, len(body))
    ) + body


class SseParser:
    """Server-sent events from a byte stream: :meth:`feed` returns the ``data`` of each event
    its bytes complete (the ``data:`` lines of one event joined by newlines, the optional
    space after the colon removed; comments and other fields ignored)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of the events completed by ``chunk``."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # CRLF line ends as LF (a CR last in the chunk waits for its LF).
            held = buffer.endswith(b"\r")
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace(b"\r\n", b"\n") + (b"\r" if held else b"")
        events = []
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2 :]
            data = [
                line[6:] if line.startswith(b"data: ") else line[5:]
                for line in block.split(b"\n")
                if line.startswith(b"data:")
            ]
            if data:
                events.append(b"\n".join(data))
        self._buffer = buffer
        return events


def parse_event(
    data: bytes, text_output: str | None, token_output: str | None
) -> tuple[str | None, bytes, int]:
    """What one event (or /generate document) says: its error (None: none), the text of
    ``text_output`` in it, and the elements of ``token_output``."""
    if text_output is None and token_output is None and b'"error"' not in data:
        return None, b"", 0
    try:
        doc = json.loads(data)
    except ValueError as e:
        return f"unreadable generate response ({e}): {data[:200]!r}", b"", 0
    if not isinstance(doc, dict):
        return f"generate response is not a JSON object: {data[:200]!r}", b"", 0
    if "error" in doc:
        return str(doc["error"]), b"", 0
    text = b""
    if text_output is not None:
        value = doc.get(text_output)
        if isinstance(value, list):
            text = "".join(map(str, value)).encode()
        elif value is not None:
            text = str(value).encode()
    tokens = 0
    if token_output is not None and token_output in doc:
        value = doc[token_output]
        tokens = len(value) if isinstance(value, list) else 1
    return None, text, tokens


class _Conn(asyncio.Protocol):
    """One TCP connection with one generate request outstanding."""

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._parser = httptools.HttpResponseParser(self)
        self._sse: SseParser | None = None
        self._status = 0
        self._body: list[bytes] = []
        self._now = 0
        self.done: asyncio.Future[str | None] | None = None
        self.times: list[int] = []
        self.texts: list[bytes] = []
        self.tokens = 0
        self.error: str | None = None
        self.last_ns = 0

    def begin(self) -> asyncio.Future[str | None]:
        """A fresh request: its outcome's future."""
        self.done = asyncio.get_running_loop().create_future()
        self.times, self.texts, self.tokens, self.error = [], [], 0, None
        self.last_ns = perf_counter_ns()
        return self.done

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._now = self.last_ns = perf_counter_ns()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._finish(TransportError(f"malformed HTTP response: {e}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._finish(TransportError(f"connection closed by the server{reason}"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._status, self._body, self._sse = 0, [], None

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        # The framing follows the endpoint asked: events from generate_stream's 200, one
        # JSON document otherwise (an error before the stream starts is plain JSON).
        if self._status == 200 and self._spec.events:
            self._sse = SseParser()

    def on_body(self, body: bytes) -> None:
        if self._sse is None:
            self._body.append(body)
            return
        for event in self._sse.feed(body):
            self._event(event)

    def _event(self, data: bytes) -> None:
        error, text, tokens = parse_event(data, self._spec.text_output, self._spec.token_output)
        if error is not None:
            if self.error is None:
                self.error = error
            return
        self.times.append(self._now)
        if text:
            self.texts.append(text)
        self.tokens += tokens

    def on_message_complete(self) -> None:
        if self._sse is None:
            body = b"".join(self._body)
            if self._status != 200:
                self.error = _error_text(self._status, body)
            elif body:
                self._event(body)
        self._finish(self.error)

    def _finish(self, outcome: str | BaseException | None) -> None:
        done, self.done = self.done, None
        if done is None or done.done():
            return
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)


def _error_text(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body.decode("utf-8", "replace"))
        if isinstance(doc, dict) and "error" in doc:
            return f"HTTP {status}: {doc['error']}"
    except ValueError:
        pass
    text = body[:300].decode("utf-8", "replace")
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


class GenerateClient:
    """Sends pre-encoded generate requests over one keep-alive HTTP/1.1 connection, one in
    flight, every response (SSE event) timed on arrival. A request whose next response does
    not come within ``StreamSpec.timeout_s`` fails and its connection is closed."""

    def __init__(self, host: str, port: int, requests: Sequence[bytes], spec: StreamSpec) -> None:
        self._host = host
        self._port = port
        self._requests = list(requests)
        self._spec = spec
        self._conn: _Conn | None = None
        #: Arrival times (perf_counter_ns) of the last request's responses.
        self.response_ns: list[int] = []
        #: Tokens in the last request's responses (-1: not counted).
        self.tokens = -1
        #: The last request's ``text_output``, concatenated (None: not kept).
        self.text: bytes | None = None
        #: The index of the last request sent.
        self.index = -1

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Conn(self._spec), self._host, self._port
            )
        except OSError as e:
            raise TransportError(f"cannot connect to {self._host}:{self._port}: {e}") from e
        return conn

    async def connect(self) -> None:
        """Open the connection now, off the clock."""
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()

    async def infer(self, i: int) -> str | None:
        """Send request ``i`` and wait for its last response; None on success, else the
        error (an HTTP status, an error event, or no response within the timeout)."""
        self.response_ns, self.tokens, self.text, self.index = [], -1, None, i
        conn = self._conn
        if conn is None or conn.closed or not conn.keep_alive:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = self._conn = await self._connect()
        assert conn.transport is not None
        done = conn.begin()
        self.response_ns = conn.times
        conn.transport.write(self._requests[i])
        try:
            outcome = await self._wait(conn, done)
        except asyncio.CancelledError:
            self._drop(conn)
            raise
        finally:
            self.response_ns = conn.times
            if self._spec.token_output is not None:
                self.tokens = conn.tokens
            if self._spec.text_output is not None:
                self.text = b"".join(conn.texts)
        return outcome

    async def _wait(self, conn: _Conn, done: asyncio.Future[str | None]) -> str | None:
        """The request's outcome; fails it when its next response is later than
        ``timeout_s`` (one timer per request, re-armed only when it fires)."""
        timeout = self._spec.timeout_s
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None
        expired: list[str] = []

        def check() -> None:
            nonlocal handle
            if done.done():
                return
            left = timeout - (perf_counter_ns() - conn.last_ns) / 1e9
            if left > 0:
                handle = loop.call_later(left, check)
                return
            got = len(conn.times)
            since = "its last response" if got else "it was sent"
            expired.append(
                f"model '{self._spec.model}' sent no final response within {timeout:g} s of"
                f" {since} ({got} response(s) so far) over generate; stream_timeout_s sets"
                " the wait"
            )
            self._drop(conn)

        handle = loop.call_later(timeout, check)
        try:
            return await done
        except asyncio.CancelledError:
            if expired:  # the timer gave up on it, not the caller
                return expired[0]
            raise
        finally:
            handle.cancel()

    def _drop(self, conn: _Conn) -> None:
        """Close ``conn``: a late answer to an abandoned request must not answer the next."""
        if conn.transport is not None:
            conn.transport.close()
        conn.closed = True
        if conn.done is not None and not conn.done.done():
            conn.done.cancel()
        conn.done = None

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
