"""Streaming (decoupled) models: requests sent on gRPC's bidirectional ``ModelStreamInfer``,
every response timed as it arrives.

A decoupled model answers one request with any number of responses. Each client here owns one
stream and keeps one request in flight on it (perf_analyzer's ``--streaming`` does the same per
context): it sends the pre-encoded request, stamps every response with ``perf_counter_ns`` on
arrival, and returns when the final one comes. Requests carry
``triton_enable_empty_final_response``, so the final flag always arrives, on the last response
or on an empty one after it (Triton's ``triton_final_response`` parameter).

What a response is: a message with at least one output. The empty final-flag message is not a
response; it ends the request (its latency). An error response (``error_message``) makes the
request failed; it still ends at the final flag, or at once when the error carries no flag (a
request Triton refused). A request whose next response does not come within
``StreamSpec.timeout_s`` fails with a message naming the model, and its stream is reset: a model
that never sends the final flag is reported, not waited on.

Two clients, as for unary calls: :class:`H2StreamInferClient` on the lean HTTP/2 client
(default) and :class:`GrpcStreamInferClient` on grpc.aio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from pytest_triton_perf.load.h2_client import H2Connection, Http2Channel
from pytest_triton_perf.load.h2_frames import grpc_message, request_header_block
from pytest_triton_perf.load.transport import TransportError

MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"
#: Default of ``stream_timeout_s``: how long a request may wait for its next response.
DEFAULT_TIMEOUT_S = 10.0
FINAL = "triton_final_response"


@dataclass(frozen=True)
class StreamSpec:
    """How a load generator drives a decoupled model (picklable, for worker processes)."""

    model: str
    #: Output whose element count is the number of tokens of a response (None: not counted).
    token_output: str | None = None
    #: Longest wait for a request's next response (or its first), in seconds.
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: BYTES output whose text is kept per request, for a tokenizer to count after the
    #: windows (None: not kept).
    text_output: str | None = None
    #: ``protocol="generate"``: server-sent events of generate_stream (True) or the one JSON
    #: document of generate (False). Not read by the gRPC clients.
    events: bool = True


def stream_request(serialized: bytes) -> bytes:
    """A serialised ``ModelInferRequest`` with ``triton_enable_empty_final_response`` set, so
    that the final flag arrives even when the model sends it without a response."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest.FromString(serialized)
    req.parameters["triton_enable_empty_final_response"].bool_param = True
    return bytes(req.SerializeToString())


@dataclass(frozen=True)
class Response:
    """What one ``ModelStreamInferResponse`` says about its request."""

    final: bool | None  # triton_final_response; None when the message has no such flag
    outputs: int  # outputs it carries (0: the empty final-flag message)
    tokens: int  # elements of the token output (0 when absent or not counted)
    error: str | None
    text: bytes = b""  # the elements of the text output, concatenated (b"": not kept)


def parse_response(
    message: bytes, token_output: str | None, text_output: str | None = None
) -> Response:
    """Decode one serialised ``ModelStreamInferResponse`` (upb: about 2 us)."""
    from tritonclient.grpc import service_pb2

    decoded = service_pb2.ModelStreamInferResponse.FromString(message)
    infer = decoded.infer_response
    flag = infer.parameters.get(FINAL)
    tokens = 0
    if token_output is not None:
        for out in infer.outputs:
            if out.name == token_output:
                n = 1
                for d in out.shape:
                    n *= d
                tokens += n
    text = b""
    if text_output is not None:
        for k, out in enumerate(infer.outputs):
            if out.name == text_output:
                if k < len(infer.raw_output_contents):
                    text += bytes_elements(infer.raw_output_contents[k])
                else:
                    text += b"".join(out.contents.bytes_contents)
    return Response(
        final=flag.bool_param if flag is not None else None,
        outputs=len(infer.outputs),
        tokens=tokens,
        error=decoded.error_message or None,
        text=text,
    )


def bytes_elements(raw: bytes) -> bytes:
    """The elements of a BYTES tensor in Triton's wire format (each a 4-byte little-endian
    length and its bytes), concatenated."""
    parts, pos = [], 0
    while pos + 4 <= len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "little")
        parts.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return b"".join(parts)


class _Request:
    """The request in flight on one stream: its responses' arrival times, tokens, outcome."""

    def __init__(self, spec: StreamSpec) -> None:
        self._spec = spec
        self.done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.times: list[int] = []
        self.tokens = 0
        self.texts: list[bytes] = []
        self.error: str | None = None
        self.timed_out = False
        self._last_ns = perf_counter_ns()

    def on_message(self, message: bytes) -> None:
        """One message of the stream, stamped on arrival."""
        now = perf_counter_ns()
        if self.done.done():
            return  # given up on (timed out): its stream is being reset
        self._last_ns = now
        try:
            r = parse_response(message, self._spec.token_output, self._spec.text_output)
        except Exception as e:  # a message that does not decode fails its request
            self.done.set_result(f"unreadable ModelStreamInferResponse: {e}")
            return
        if r.outputs:
            self.times.append(now)
            self.tokens += r.tokens
            if r.text:
                self.texts.append(r.text)
        if r.error is not None and self.error is None:
            self.error = r.error
        if r.final or (r.final is None and r.error is not None):
            self.done.set_result(self.error)

    def end(self, outcome: str | BaseException) -> None:
        """The stream ended under the request: it failed (a TransportError is raised)."""
        if self.done.done():
            return
        if isinstance(outcome, BaseException):
            self.done.set_exception(outcome)
        else:
            self.done.set_result(
                f"the ModelStreamInfer stream ended before the final response: {outcome}"
            )

    def _check_idle(self) -> float:
        """Seconds left before the request times out; fails it when none are left."""
        if self.done.done():
            return 0.0
        left = self._spec.timeout_s - (perf_counter_ns() - self._last_ns) / 1e9
        if left <= 0:
            got = len(self.times)
            since = "its last response" if got else "it was sent"
            self.timed_out = True
            self.done.set_result(
                f"model '{self._spec.model}' sent no final response within "
                f"{self._spec.timeout_s:g} s of {since} ({got} response(s) so far): does it "
                "send the final flag (TRITONSERVER_RESPONSE_COMPLETE_FINAL)? "
                "stream_timeout_s sets the wait"
            )
        return left

    async def outcome(self) -> str | None:
        """None on success, else the error; fails the request when its next response is
        later than ``timeout_s`` (one timer per request, re-armed only when it fires)."""
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal handle
            left = self._check_idle()
            if left > 0:
                handle = loop.call_later(left, check)

        handle = loop.call_later(self._spec.timeout_s, check)
        try:
            return await self.done
        finally:
            handle.cancel()


class H2StreamInferClient:
    """One ``ModelStreamInfer`` stream on a shared :class:`Http2Channel`, one request in
    flight on it; the stream is opened on first use and again after it ended."""

    def __init__(self, channel: Http2Channel, requests: Sequence[bytes], spec: StreamSpec) -> None:
        self._channel = channel
        self._spec = spec
        self._block = request_header_block(f"{channel.host}:{channel.port}", MODEL_STREAM_INFER)
        self._messages = [grpc_message(stream_request(r)) for r in requests]
        self._conn: H2Connection | None = None
        self._stream_id = 0
        self._ended: asyncio.Future[str | None] | None = None
        self._request: _Request | None = None
        #: Arrival times (perf_counter_ns) of the last request's responses.
        self.response_ns: list[int] = []
        #: Tokens in the last request's responses (-1: not counted).
        self.tokens = -1
        #: The last request's text output, concatenated (None: not kept).
        self.text: bytes | None = None
        #: The index of the last request sent.
        self.index = -1

    async def connect(self) -> None:
        """Open the channel's connection now, off the clock."""
        await self._channel.connection()

    def _on_message(self, message: bytes) -> None:
        if self._request is not None:
            self._request.on_message(message)

    async def _stream(self) -> tuple[H2Connection, int]:
        conn = self._conn
        if conn is None or conn.closed or self._ended is None or self._ended.done():
            conn = await self._channel.connection()
            self._stream_id, self._ended = await conn.open_stream(self._block, self._on_message)
            self._ended.add_done_callback(self._on_end)
            self._conn = conn
        return conn, self._stream_id

    def _on_end(self, ended: asyncio.Future[str | None]) -> None:
        """The stream ended (the server closed it, or the connection went)."""
        outcome: str | BaseException = "cancelled"
        if not ended.cancelled():
            outcome = ended.exception() or ended.result() or "OK"
        if ended is self._ended and self._request is not None:
            self._request.end(outcome)

    async def infer(self, i: int) -> str | None:
        """Send request ``i`` on the stream and wait for its final response."""
        # A failure to connect had no responses.
        self.response_ns, self.tokens, self.text, self.index = [], -1, None, i
        conn, stream_id = await self._stream()
        request = _Request(self._spec)
        self._request = request
        self.response_ns = request.times
        try:
            conn.send_message(stream_id, self._messages[i])
            error = await request.outcome()
        except asyncio.CancelledError:
            self._reset()
            raise
        finally:
            self.tokens = request.tokens if self._spec.token_output is not None else -1
            if self._spec.text_output is not None:
                self.text = b"".join(request.texts)
        if request.timed_out:
            self._reset()  # late responses of the abandoned request must not count
        return error

    def _reset(self) -> None:
        if self._conn is not None and self._ended is not None and not self._ended.done():
            self._conn.reset_stream(self._stream_id)
        self._ended = None
        self._request = None

    async def close(self) -> None:
        """Reset the stream; the channel is owned by whoever opened it."""
        self._reset()


class GrpcStreamInferClient:
    """One ``ModelStreamInfer`` call on a grpc.aio channel, one request in flight on it."""

    def __init__(self, channel: Any, requests: Sequence[bytes], spec: StreamSpec) -> None:
        self._channel = channel
        self._spec = spec
        self._messages = [stream_request(r) for r in requests]
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._request: _Request | None = None
        self.response_ns: list[int] = []
        self.tokens = -1
        self.text: bytes | None = None
        self.index = -1

    def _open(self) -> Any:
        try:
            # A registered method skips per-call method lookups (grpcio >= 1.63).
            method = self._channel.stream_stream(MODEL_STREAM_INFER, _registered_method=True)
        except TypeError:  # pragma: no cover - older grpcio
            method = self._channel.stream_stream(MODEL_STREAM_INFER)
        return method()

    async def _read(self, call: Any) -> None:
        """Hand every message of ``call`` to the request in flight, until the call ends."""
        import grpc

        outcome: str | BaseException = "OK"
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                if self._request is not None:
                    self._request.on_message(message)
        except grpc.aio.AioRpcError as e:
            text = f"{e.code().name}: {e.details()}"
            outcome = TransportError(text) if e.code() == grpc.StatusCode.UNAVAILABLE else text
        except asyncio.CancelledError:
            return
        if self._call is call and self._request is not None:
            self._request.end(outcome)

    async def infer(self, i: int) -> str | None:
        """Send request ``i`` on the call and wait for its final response."""
        self.response_ns, self.tokens, self.text, self.index = [], -1, None, i
        if self._call is None or self._reader is None or self._reader.done():
            self._call = self._open()
            self._reader = asyncio.create_task(self._read(self._call))
        request = _Request(self._spec)
        self._request = request
        self.response_ns = request.times
        try:
            try:
                await self._call.write(self._messages[i])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the call ended before the write
                await self._reset()
                return _status_of(e)
            error = await request.outcome()
        except asyncio.CancelledError:
            await self._reset()
            raise
        finally:
            self.tokens = request.tokens if self._spec.token_output is not None else -1
            if self._spec.text_output is not None:
                self.text = b"".join(request.texts)
        if request.timed_out:
            await self._reset()
        return error

    async def _reset(self) -> None:
        call, reader = self._call, self._reader
        self._call = self._reader = None
        self._request = None
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def close(self) -> None:
        """Cancel the call; the channel is owned by whoever opened it."""
        await self._reset()


def _status_of(e: Exception) -> str:
    """The error text of a failed grpc.aio write, ``"<CODE>: <details>"``; a transport
    failure raises TransportError instead."""
    import grpc

    if isinstance(e, grpc.aio.AioRpcError):
        text = f"{e.code().name}: {e.details()}"
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            raise TransportError(text) from e
        return text
    return f"the ModelStreamInfer call ended before the request was sent: {e}"
