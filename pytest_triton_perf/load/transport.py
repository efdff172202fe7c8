"""What the protocol clients of the load generator take (encoded inputs) and what they offer
to the loops that drive them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ShmRef:
    """Where a tensor lies in a shared-memory region registered with the server: the
    region's registered name, the offset and the byte size (Triton's
    ``shared_memory_region`` / ``shared_memory_offset`` / ``shared_memory_byte_size``)."""

    region: str
    offset: int
    byte_size: int


@dataclass(frozen=True)
class InputTensor:
    """One input of one request, encoded once: full shape (batch included) and raw bytes.

    ``data`` is what both protocols carry: row-major little-endian values, or for BYTES each
    element as a 4-byte little-endian length followed by its bytes (Triton's wire format).
    With ``shm`` set, the same bytes lie in a shared-memory region and the request carries
    the reference instead of the bytes.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    shm: ShmRef | None = None


class TransportError(Exception):
    """The connection itself failed (refused, reset, closed): the server may be gone.

    Distinct from a failed inference, which the server answers and which is counted: a loop
    that sees this asks whether the server is still alive before counting anything.
    """


class InferClient(Protocol):
    """One in-flight slot's client: sends pre-encoded request ``i`` and awaits its answer."""

    async def infer(self, i: int) -> str | None:
        """Send request ``i`` and wait for its response.

        Returns None on success, or the server's error message for a failed inference.
        Raises TransportError when the connection fails.
        """
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class RawInferClient(InferClient, Protocol):
    """A client that also sends a request encoded by the caller (sequence models: every
    request carries its own sequence ID and flags)."""

    async def infer_raw(self, request: bytes) -> str | None:
        """Send ``request`` (the protocol's encoding, see :mod:`sequences`) and wait for its
        response; the same outcome as :meth:`InferClient.infer`."""
        ...


class StreamingClient(InferClient, Protocol):
    """A client of a decoupled model: after ``infer`` returns, what its responses were."""

    #: Arrival times (``perf_counter_ns``) of the last request's responses, in order.
    response_ns: list[int]
    #: Tokens counted in them (-1: not counted).
    tokens: int
