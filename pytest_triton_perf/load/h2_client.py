"""A lean gRPC client for ModelInfer: HTTP/2 framing written directly on an asyncio transport.

Why not grpc.aio: each grpc.aio call costs about 100 us of CPU in the client (call objects,
the poller thread and its hand-off to the event loop), several times what the server spends
on a tiny model. On a machine the server shares, that CPU is taken from the server and the
measurement shows the client's cost. Here a request is a pre-encoded HEADERS block plus the
serialised message, written with one ``transport.write``; responses are read by a small frame
parser. grpc.aio remains the fallback (``grpc_client``).

Scope: unary calls, and bidirectional streams whose messages are handed to a callback as they
arrive (``ModelStreamInfer``, see :mod:`stream`), over cleartext HTTP/2 (prior knowledge, as
grpc uses), many streams per connection, flow control both ways. HPACK: requests are one
pre-encoded block that leaves no table state; responses are decoded with the ``hpack``
package (Huffman strings and the dynamic table, which this client asks the server to keep at
size 0), behind a cache of the few blocks a server repeats (:class:`ResponseHeaderDecoder`).
A call succeeds only on a readable ``:status`` 200 and ``grpc-status`` 0; a header block that
does not decode fails the calls of its connection with a :class:`TransportError` that says
what was unreadable. The pieces that need no connection (frames, header blocks, status
codes) are in :mod:`h2_frames`.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import hpack

from pytest_triton_perf.load.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    WINDOW_UPDATE,
    FrameError,
    ResponseHeaderDecoder,
    code_name,
    frame,
    frame_header,
    grpc_message,
    percent_decode,
    request_header_block,
)
from pytest_triton_perf.load.transport import TransportError


@dataclass
class _Stream:
    waiter: asyncio.Future[str | None]
    pending: bytes = b""  # request data not yet sent (flow control)
    window: int = DEFAULT_WINDOW
    status: bytes | None = None  # :status
    grpc_status: bytes | None = None
    grpc_message: bytes = b""
    # Bidirectional streams only: each complete gRPC message received goes to ``on_message``;
    # the client's side stays open after its data (no END_STREAM).
    on_message: Callable[[bytes], None] | None = None
    received: bytearray = field(default_factory=bytearray)
    unacked: int = 0  # bytes received on the stream and not yet returned by WINDOW_UPDATE


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection carrying many concurrent unary gRPC calls."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._decoder = ResponseHeaderDecoder()
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = 16384
        self._peer_max_streams = 2**31
        self._received = 0
        self._headers_stream = 0  # stream whose header block continues, 0 when none
        self._headers_end_stream = False
        self._header_block = bytearray()
        self._blocked: deque[int] = deque()  # streams with data waiting for window
        self._stream_slots: asyncio.Event | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            MAX_WINDOW,
            SETTINGS_HEADER_TABLE_SIZE,
            0,
        )
        self.transport.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail_all(TransportError(f"HTTP/2 connection closed by the server{reason}"))

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        try:
            while n - pos >= 9:
                length = buf[pos] << 16 | buf[pos + 1] << 8 | buf[pos + 2]
                if n - pos < 9 + length:
                    break
                kind = buf[pos + 3]
                flags = buf[pos + 4]
                stream = (
                    buf[pos + 5] << 24 | buf[pos + 6] << 16 | buf[pos + 7] << 8 | buf[pos + 8]
                ) & 0x7FFFFFFF
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._on_frame(kind, flags, stream, payload)
        except (FrameError, struct.error, IndexError) as e:
            self._protocol_error(f"malformed HTTP/2 response: {e}")
            return
        del buf[:pos]

    # frames

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._headers_stream and kind != CONTINUATION:
            raise FrameError("header block interrupted")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1 : len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._header_block = bytearray(payload)
            self._headers_end_stream = bool(flags & END_STREAM)
            self._headers_stream = stream_id
            if flags & END_HEADERS:
                self._on_header_block()
        elif kind == CONTINUATION:
            self._header_block += payload
            if flags & END_HEADERS:
                self._on_header_block()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._on_settings(payload)
        elif kind == PING:
            if not flags & ACK:
                self._write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, struct.unpack(">I", payload)[0] & 0x7FFFFFFF)
        elif kind == RST_STREAM:
            code = struct.unpack(">I", payload)[0]
            self._finish(stream_id, f"HTTP/2 stream reset by the server (error code {code})")
        elif kind == GOAWAY:
            last = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            self.closed = True  # no new streams here
            for sid in [s for s in self._streams if s > last]:
                self._fail(sid, TransportError("server sent GOAWAY before answering"))
        # PRIORITY, PUSH_PROMISE (disabled) and unknown frames are ignored.

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._received += len(payload)
        if self._received > MAX_WINDOW // 2:
            # Keep the connection window open: return what was consumed.
            self._write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received)))
            self._received = 0
        st = self._streams.get(stream_id)
        if st is None:
            return
        if st.on_message is not None:
            self._on_stream_data(stream_id, st, payload)
        if flags & END_STREAM:
            self._complete(stream_id, st)

    def _on_stream_data(self, stream_id: int, st: _Stream, payload: bytes) -> None:
        """Split a bidirectional stream's data into gRPC messages (a 5-byte prefix each: the
        compression flag and the length), each handed to the stream's callback."""
        st.unacked += len(payload)
        if st.unacked > MAX_WINDOW // 2:
            # A long-lived stream: return the consumed bytes of its own window too.
            self._write(frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", st.unacked)))
            st.unacked = 0
        buf = st.received
        buf += payload
        pos = 0
        while len(buf) - pos >= 5:
            length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if len(buf) - pos < 5 + length:
                break
            message = bytes(buf[pos + 5 : pos + 5 + length])
            pos += 5 + length
            assert st.on_message is not None
            st.on_message(message)
        del buf[:pos]

    def _on_header_block(self) -> None:
        stream_id, end = self._headers_stream, self._headers_end_stream
        self._headers_stream = 0
        block = bytes(self._header_block)
        try:
            fields = self._decoder.decode(block)
        except hpack.HPACKError as e:
            # The decoder's table may be half-updated: no later block can be trusted either.
            shown = block[:48].hex() + ("..." if len(block) > 48 else "")
            raise FrameError(
                f"unreadable response header block on stream {stream_id} "
                f"({len(block)} bytes: {shown}): {e}"
            ) from e
        st = self._streams.get(stream_id)
        if st is None:
            return
        if fields.status is not None:
            st.status = fields.status
        if fields.grpc_status is not None:
            st.grpc_status = fields.grpc_status
        if fields.grpc_message is not None:
            st.grpc_message = fields.grpc_message
        if end:
            self._complete(stream_id, st)

    def _on_settings(self, payload: bytes) -> None:
        for k in range(0, len(payload) - len(payload) % 6, 6):
            key, value = struct.unpack(">HI", payload[k : k + 6])
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for st in self._streams.values():
                    st.window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
        self._write(frame(SETTINGS, ACK, 0))
        self._flush_blocked()

    def _on_window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self._send_window += increment
        elif stream_id in self._streams:
            self._streams[stream_id].window += increment
        self._flush_blocked()

    # completion

    def _complete(self, stream_id: int, st: _Stream) -> None:
        # Only what was read counts: a missing :status or grpc-status is an error.
        if st.status == b"200" and st.grpc_status == b"0":
            self._finish(stream_id, None)
        elif st.grpc_status is not None and st.grpc_status != b"0":
            message = percent_decode(st.grpc_message)
            self._finish(stream_id, f"{code_name(st.grpc_status)}: {message}")
        else:
            status = st.status.decode(errors="replace") if st.status else "missing"
            grpc_status = code_name(st.grpc_status) if st.grpc_status else "missing"
            self._finish(
                stream_id, f"response with HTTP status {status} and grpc-status {grpc_status}"
            )

    def _finish(self, stream_id: int, result: str | None) -> None:
        st = self._streams.pop(stream_id, None)
        if st is not None and not st.waiter.done():
            st.waiter.set_result(result)
        if self._stream_slots is not None:
            self._stream_slots.set()

    def _fail(self, stream_id: int, exc: Exception) -> None:
        st = self._streams.pop(stream_id, None)
        if st is not None and not st.waiter.done():
            st.waiter.set_exception(exc)

    def _fail_all(self, exc: Exception) -> None:
        for sid in list(self._streams):
            self._fail(sid, exc)

    def _protocol_error(self, text: str) -> None:
        self.closed = True
        self._fail_all(TransportError(text))
        if self.transport is not None:
            self.transport.close()

    # sending

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _send_data(self, stream_id: int, st: _Stream) -> bool:
        """Send as much of the stream's data as the windows allow; True when all sent."""
        chunks = []
        data = st.pending
        last = 0 if st.on_message is not None else END_STREAM  # a stream stays open
        while data:
            allowed = min(len(data), self._send_window, st.window, self._peer_max_frame)
            if allowed <= 0:
                break
            piece, data = data[:allowed], data[allowed:]
            flags = 0 if data else last
            chunks.append(frame_header(allowed, DATA, flags, stream_id) + piece)
            self._send_window -= allowed
            st.window -= allowed
        st.pending = data
        if chunks:
            self._write(b"".join(chunks))
        return not data

    def _flush_blocked(self) -> None:
        for _ in range(len(self._blocked)):
            sid = self._blocked.popleft()
            st = self._streams.get(sid)
            if st is not None and st.pending and not self._send_data(sid, st):
                self._blocked.append(sid)

    async def _new_stream(
        self, pending: bytes = b"", on_message: Callable[[bytes], None] | None = None
    ) -> tuple[int, _Stream, asyncio.Transport]:
        """A new stream's id and state, once the server's stream limit allows one."""
        while len(self._streams) >= self._peer_max_streams:
            if self._stream_slots is None:
                self._stream_slots = asyncio.Event()
            self._stream_slots.clear()
            await self._stream_slots.wait()
        if self.closed or self.transport is None:
            raise TransportError("HTTP/2 connection is closed")
        stream_id = self._next_id
        self._next_id += 2
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        st = _Stream(
            waiter=waiter, pending=pending, window=self._peer_initial_window, on_message=on_message
        )
        self._streams[stream_id] = st
        return stream_id, st, self.transport

    async def call(self, header_block: bytes, message: bytes) -> str | None:
        """One unary call: None on grpc-status 0, else ``"<CODE>: <message>"``."""
        stream_id, st, transport = await self._new_stream(pending=message)
        waiter = st.waiter
        head = frame_header(len(header_block), HEADERS, END_HEADERS, stream_id) + header_block
        if len(message) <= min(self._send_window, st.window, self._peer_max_frame):
            # The common case in one write: HEADERS and the whole message.
            self._send_window -= len(message)
            st.window -= len(message)
            st.pending = b""
            transport.write(
                head + frame_header(len(message), DATA, END_STREAM, stream_id) + message
            )
        else:
            transport.write(head)
            if not self._send_data(stream_id, st):
                self._blocked.append(stream_id)
        try:
            return await waiter
        except asyncio.CancelledError:
            if stream_id in self._streams:
                self._streams.pop(stream_id)
                self._write(frame(RST_STREAM, 0, stream_id, struct.pack(">I", 8)))  # CANCEL
            raise

    async def open_stream(
        self, header_block: bytes, on_message: Callable[[bytes], None]
    ) -> tuple[int, asyncio.Future[str | None]]:
        """Open a bidirectional gRPC stream: its id, and a future that ends with the stream
        (None on grpc-status 0, ``"<CODE>: <message>"`` otherwise; TransportError when the
        connection goes). Each message the server sends goes to ``on_message`` on arrival."""
        stream_id, st, transport = await self._new_stream(on_message=on_message)
        transport.write(
            frame_header(len(header_block), HEADERS, END_HEADERS, stream_id) + header_block
        )
        return stream_id, st.waiter

    def send_message(self, stream_id: int, message: bytes) -> None:
        """Send one framed gRPC message on an open stream (queued behind flow control)."""
        if self.closed or self.transport is None:
            raise TransportError("HTTP/2 connection is closed")
        st = self._streams.get(stream_id)
        if st is None:
            raise TransportError(f"HTTP/2 stream {stream_id} has ended")
        if st.pending:
            st.pending += message  # still waiting for window: keep the order
            return
        st.pending = message
        if not self._send_data(stream_id, st):
            self._blocked.append(stream_id)

    def reset_stream(self, stream_id: int) -> None:
        """Cancel a stream (RST_STREAM CANCEL); whatever it receives later is dropped."""
        st = self._streams.pop(stream_id, None)
        if st is None:
            return
        if not st.waiter.done():
            st.waiter.set_result("CANCELLED: stream reset by the client")
        self._write(frame(RST_STREAM, 0, stream_id, struct.pack(">I", 8)))
        if self._stream_slots is not None:
            self._stream_slots.set()

    @property
    def next_stream_id(self) -> int:
        """The id the next call will use (ids are never reused)."""
        return self._next_id


class Http2Channel:
    """A lazily (re)connected HTTP/2 connection to one ``host:port``."""

    #: Stream ids are 31-bit and never reused: reconnect well before they run out.
    MAX_STREAM_ID = 2**31 - 1000

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._conn: H2Connection | None = None
        self._connecting: asyncio.Future[H2Connection] | None = None

    async def connection(self) -> H2Connection:
        """The open connection, connecting when there is none."""
        conn = self._conn
        if conn is not None and not conn.closed and conn.next_stream_id < self.MAX_STREAM_ID:
            return conn
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            _, conn = await loop.create_connection(H2Connection, self.host, self.port)
        except OSError as e:
            err = TransportError(f"cannot connect to {self.host}:{self.port}: {e}")
            self._connecting.set_exception(err)
            self._connecting.exception()
            self._connecting = None
            raise err from e
        old, self._conn = self._conn, conn
        self._connecting.set_result(conn)
        self._connecting = None
        if old is not None and old.transport is not None and not old._streams:
            old.transport.close()
        return conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


class H2GrpcInferClient:
    """Sends pre-encoded ModelInfer requests as gRPC calls on a shared :class:`Http2Channel`."""

    def __init__(self, channel: Http2Channel, requests: Sequence[bytes]) -> None:
        self._channel = channel
        self._block = request_header_block(f"{channel.host}:{channel.port}")
        self._messages = [grpc_message(r) for r in requests]

    async def connect(self) -> None:
        """Open the channel's connection now, off the clock."""
        await self._channel.connection()

    async def infer(self, i: int) -> str | None:
        """Send request ``i``; None on OK, ``"<CODE>: <message>"`` otherwise."""
        conn = await self._channel.connection()
        return await conn.call(self._block, self._messages[i])

    async def infer_raw(self, request: bytes) -> str | None:
        """Send a serialised ModelInferRequest; the outcome as :meth:`infer`'s."""
        conn = await self._channel.connection()
        return await conn.call(self._block, grpc_message(request))

    async def close(self) -> None:
        """Nothing to release: the channel is owned by whoever opened it."""
